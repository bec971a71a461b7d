"""asn1crypto extended with the Chinese commercial-cryptography OIDs and structures.

Importing this package registers SM2/SM3/SM4 and the project's extensions with asn1crypto, so
certificates, CSRs, CRLs and CMS using them parse and dump by name like any other.
"""

from sscard.asn1 import register as _register  # noqa: F401
