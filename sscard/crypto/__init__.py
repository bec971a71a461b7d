"""Algorithms and OIDs: SM2, SM3, SM4, ECDSA, RSA, Ed25519, HMAC; a registry keyed by OID."""
