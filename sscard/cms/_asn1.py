"""ASN.1 that asn1crypto lacks for CMS key agreement (RFC 5753), registered on import."""

from __future__ import annotations

from asn1crypto import algos, cms, core

#: RFC 5753 / SEC 1 ephemeral-static ECDH key-agreement schemes, with their KDF hash
ECDH_SCHEMES = {
    "1.3.133.16.840.63.0.2": ("dh_single_pass_std_dh_sha1kdf", "sha1"),
    "1.3.132.1.11.0": ("dh_single_pass_std_dh_sha224kdf", "sha224"),
    "1.3.132.1.11.1": ("dh_single_pass_std_dh_sha256kdf", "sha256"),
    "1.3.132.1.11.2": ("dh_single_pass_std_dh_sha384kdf", "sha384"),
    "1.3.132.1.11.3": ("dh_single_pass_std_dh_sha512kdf", "sha512"),
}
KDF_HASH_BY_NAME = {name: h for name, h in ECDH_SCHEMES.values()}


class EccCmsSharedInfo(core.Sequence):
    """RFC 5753 §7.2 ECC-CMS-SharedInfo, the X9.63 KDF's SharedInfo."""

    _fields = [
        ("key_info", algos.EncryptionAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


def _register() -> None:
    for oid, (name, _hash) in ECDH_SCHEMES.items():
        cms.KeyEncryptionAlgorithmId._map[oid] = name
        cms.KeyEncryptionAlgorithm._oid_specs[name] = cms.KeyEncryptionAlgorithm
    cms.KeyEncryptionAlgorithmId._reverse_map = None


_register()
