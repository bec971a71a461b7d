"""Registers GB/T and GM/T object identifiers with asn1crypto's OID maps (done once, on import)."""

from __future__ import annotations

# tsp and pdf register names of their own on import; load them first so that every name is in
# the maps before anything below is used
from asn1crypto import algos, cms, core, keys, pdf, tsp, x509  # noqa: F401

from sscard.crypto import oids


class SocialInsuranceNumber(core.PrintableString):
    """The 个人社会保险号 extension value (1.2.156.10260.4.1.2)."""


class GCMParameters(core.Sequence):
    """RFC 5084 GCMParameters, shared by AES-GCM and SM4-GCM."""

    _fields = [
        ("nonce", core.OctetString),
        ("icv_len", core.Integer, {"default": 12}),
    ]


def _add(cls: type, mapping: dict[str, str]) -> None:
    """Add OIDs to an asn1crypto ObjectIdentifier map and drop its reverse map, which asn1crypto
    rebuilds from ``_map`` on next use. (Rebuilding it here instead would freeze it: asn1crypto's
    own tsp and pdf modules add names to ``_map`` on import without touching ``_reverse_map``.)"""
    cls._map.update(mapping)  # type: ignore[attr-defined]
    cls._reverse_map = None  # type: ignore[attr-defined]


def _register() -> None:
    keys.NamedCurve.register("sm2p256v1", oids.SM2_CURVE, 32)

    _add(algos.DigestAlgorithmId, {oids.SM3: "sm3"})
    _add(algos.SignedDigestAlgorithmId, {oids.SM2_WITH_SM3: "sm2_sm3", oids.SM2_SIGN: "sm2"})
    _add(algos.EncryptionAlgorithmId, {oids.SM4_ECB: "sm4_ecb", oids.SM4_CBC: "sm4_cbc",
                                       oids.SM4_GCM: "sm4_gcm", oids.SM2_ENCRYPT: "sm2_encrypt"})
    algos.EncryptionAlgorithm._oid_specs["sm4_cbc"] = core.OctetString
    algos.EncryptionAlgorithm._oid_specs["sm4_gcm"] = GCMParameters
    _add(cms.KeyEncryptionAlgorithmId, {oids.SM2_ENCRYPT: "sm2_encrypt"})

    _add(
        cms.ContentType,
        {
            oids.GM_DATA: "gm_data",
            oids.GM_SIGNED_DATA: "gm_signed_data",
            oids.GM_ENVELOPED_DATA: "gm_enveloped_data",
            oids.GM_SIGNED_AND_ENVELOPED_DATA: "gm_signed_and_enveloped_data",
            oids.GM_ENCRYPTED_DATA: "gm_encrypted_data",
            oids.GM_KEY_AGREEMENT_INFO: "gm_key_agreement_info",
        },
    )
    cms.ContentInfo._oid_specs.update(
        {
            "gm_data": core.OctetString,
            "gm_signed_data": cms.SignedData,
            "gm_enveloped_data": cms.EnvelopedData,
            "gm_signed_and_enveloped_data": cms.SignedAndEnvelopedData,
            "gm_encrypted_data": cms.EncryptedData,
        }
    )

    _add(x509.ExtensionId, {oids.SOCIAL_INSURANCE_NUMBER: "social_insurance_number"})
    x509.Extension._oid_specs["social_insurance_number"] = SocialInsuranceNumber


_register()
