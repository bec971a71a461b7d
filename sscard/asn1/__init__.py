"""asn1crypto extended with the Chinese commercial-cryptography OIDs and structures.

Importing this package registers SM2/SM3/SM4 and the project's extensions with asn1crypto, so
certificates, CSRs, CRLs and CMS using them parse and dump by name like any other.
"""

from sscard.asn1 import register as _register  # noqa: F401
from sscard.asn1.lengths import correct_definite_lengths
from sscard.asn1.mutation import check_changes_faster

# asn1crypto re-encodes values whose definite length ends in 0x80 (see lengths.py)
correct_definite_lengths()
# the same change check as asn1crypto's, stopping at the first change (see mutation.py)
check_changes_faster()
