"""The identity provider: card login for business systems' web applications (issue 15)."""
