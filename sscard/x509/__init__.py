"""Build and parse certificates, CSRs and CRLs (asn1crypto), signed by any key handle."""
