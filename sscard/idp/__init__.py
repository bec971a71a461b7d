"""The identity provider (OpenID Connect) through which business systems' web applications let
cardholders log in with the social security card."""
