"""Checks on one SignerInfo: which certificate it names, its signed attributes, its signature.

Shared by SignedData verification and time-stamp token verification. Findings are returned as
``(code, message)`` pairs rather than raised, so a verifier can list every problem at once.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from asn1crypto import cms, core, x509

from sscard.crypto import oids
from sscard.crypto.algorithms import (
    SignatureAlgorithm,
    pss_parameters_from_asn1,
    signature_algorithm_for_oid,
    signature_algorithm_from_asn1,
)
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError, InvalidSignature, UnsupportedAlgorithm
from sscard.crypto.hashes import digest
from sscard.crypto.sm2 import DEFAULT_UID

Finding = tuple[str, str]

# Producers put the key's algorithm where the signature algorithm belongs (OpenSSL writes
# rsaEncryption; some write id-ecPublicKey or the SM2 key OIDs): the digest algorithm then
# says which hash goes with it.
_BY_KEY_OID = {
    oids.RSA_ENCRYPTION: {"sha256": SignatureAlgorithm.RSA_PKCS1_SHA256,
                          "sha384": SignatureAlgorithm.RSA_PKCS1_SHA384,
                          "sha512": SignatureAlgorithm.RSA_PKCS1_SHA512},
    oids.EC_PUBLIC_KEY: {"sha256": SignatureAlgorithm.ECDSA_SHA256,
                         "sha384": SignatureAlgorithm.ECDSA_SHA384,
                         "sha512": SignatureAlgorithm.ECDSA_SHA512},
    oids.SM2_CURVE: {"sm3": SignatureAlgorithm.SM2_SM3},
    oids.SM2_SIGN: {"sm3": SignatureAlgorithm.SM2_SM3},
}


def signature_algorithm_of(info: cms.SignerInfo) -> SignatureAlgorithm:
    """The signature algorithm of a SignerInfo; raises UnsupportedAlgorithm with the OID."""
    sig_alg = info["signature_algorithm"]
    oid = sig_alg["algorithm"].dotted
    digest_name = info["digest_algorithm"]["algorithm"].native
    by_digest = _BY_KEY_OID.get(oid)
    if by_digest is not None:
        try:
            return by_digest[digest_name]
        except KeyError:
            raise UnsupportedAlgorithm(
                f"signature algorithm {oid} with digest {digest_name} is not supported"
            ) from None
    if oid == oids.RSA_PSS:
        return signature_algorithm_from_asn1(sig_alg)
    return signature_algorithm_for_oid(oid)


def signer_matches(sid: cms.SignerIdentifier, cert: x509.Certificate) -> bool:
    if sid.name == "issuer_and_serial_number":
        ias = sid.chosen
        if ias["serial_number"].native != cert.serial_number:
            return False
        # the same encoding is the common case; Name equality (RFC 5280 §7.1) is costly
        return ias["issuer"].dump() == cert.issuer.dump() or bool(ias["issuer"] == cert.issuer)
    return cert.key_identifier is not None and sid.chosen.native == cert.key_identifier


def find_signer(sid: cms.SignerIdentifier,
                certificates: Iterable[x509.Certificate]) -> x509.Certificate | None:
    for cert in certificates:
        if signer_matches(sid, cert):
            return cert
    return None


def has_signed_attributes(info: cms.SignerInfo) -> bool:
    attrs = info["signed_attrs"]
    return not isinstance(attrs, core.Void) and len(attrs) > 0


def attribute(attrs: cms.CMSAttributes, name: str) -> object | None:
    """The single value of signed/unsigned attribute ``name`` (asn1crypto object) or None."""
    for attr in attrs:
        if attr["type"].native == name:
            values = attr["values"]
            return values[0] if len(values) else None
    return None


def check_signer_info(
    info: cms.SignerInfo,
    cert: x509.Certificate,
    content: bytes | None,
    expected_content_type: str,
    *,
    content_digest: bytes | None = None,
    uid: bytes = DEFAULT_UID,
    public_key: PublicKey | None = None,
) -> list[Finding]:
    """Every problem with ``info`` as a signature by ``cert`` over ``content`` (or over a
    content whose digest is ``content_digest``); empty when it is good."""
    findings: list[Finding] = []
    try:
        alg = signature_algorithm_of(info)
        pss = pss_parameters_from_asn1(info["signature_algorithm"])
    except UnsupportedAlgorithm as exc:
        return [("UNSUPPORTED_ALGORITHM", str(exc))]
    digest_name = info["digest_algorithm"]["algorithm"].native
    try:
        actual = (content_digest if content_digest is not None
                  else digest(digest_name, content or b""))
    except ValueError as exc:
        return [("UNSUPPORTED_ALGORITHM", str(exc))]
    try:
        key = public_key or PublicKey.from_spki(cert.public_key.dump())
    except CryptoError as exc:
        return [("UNSUPPORTED_ALGORITHM", f"signer's public key: {exc}")]

    signed_attrs = info["signed_attrs"]
    if not has_signed_attributes(info):
        # RFC 5652 §5.4 without attributes: the signature is over the content itself
        if content is None:
            return [("BAD_SIGNATURE", "no signed attributes and no content to check against")]
        signed_bytes = content
    else:
        md = attribute(signed_attrs, "message_digest")
        ct = attribute(signed_attrs, "content_type")
        if md is None:
            findings.append(("BAD_SIGNED_ATTRIBUTES", "the message-digest attribute is missing"))
        elif not hmac.compare_digest(md.native, actual):  # type: ignore[attr-defined]
            findings.append(("CONTENT_CHANGED",
                             f"the content's {digest_name} digest does not match the signed "
                             "message digest: the document was changed after signing"))
        if ct is None:
            findings.append(("BAD_SIGNED_ATTRIBUTES", "the content-type attribute is missing"))
        elif _normal_type(ct.native) != _normal_type(expected_content_type):  # type: ignore[attr-defined]
            findings.append(("BAD_SIGNED_ATTRIBUTES",
                             f"signed content type {ct.native} differs from the encapsulated "  # type: ignore[attr-defined]
                             f"{expected_content_type}"))
        # the signature covers the attributes as a DER SET OF: re-tag the [0] IMPLICIT field
        signed_bytes = b"\x31" + signed_attrs.dump()[1:]
    try:
        # the PSS salt length is the one the SignerInfo states, checked exactly
        key.verify(info["signature"].native, signed_bytes, alg, uid, pss=pss)
    except InvalidSignature:
        findings.append(("BAD_SIGNATURE",
                         f"the {alg.name} signature does not verify with the signer's key"))
    except (UnsupportedAlgorithm, ValueError) as exc:
        findings.append(("BAD_SIGNATURE", f"the signature cannot be checked: {exc}"))
    return findings


def _normal_type(name: str) -> str:
    from sscard.cms.content_types import normalise

    return normalise(name)
