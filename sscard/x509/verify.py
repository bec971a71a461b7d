"""Signature checks on certificates, CSRs and CRLs, for every algorithm in the registry."""

from __future__ import annotations

from asn1crypto import crl, csr, x509

from sscard.crypto.algorithms import (
    SignatureAlgorithm,
    pss_parameters_from_asn1,
    signature_algorithm_from_asn1,
)
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError, InvalidSignature


def verify_signature(public_key: PublicKey, signed: bytes, signature: bytes,
                     signature_algorithm: object) -> None:
    """Raise InvalidSignature unless ``signature`` over ``signed`` verifies.

    ``signature_algorithm`` is an asn1crypto SignedDigestAlgorithm (as found in the structure).
    """
    try:
        alg = signature_algorithm_from_asn1(signature_algorithm)
        pss = pss_parameters_from_asn1(signature_algorithm)
    except CryptoError as exc:
        raise InvalidSignature(str(exc)) from None
    # RSA-PSS: the salt length stated in the AlgorithmIdentifier, checked exactly
    public_key.verify(signature, signed, alg, pss=pss)


def verify_certificate_signature(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    key = PublicKey.from_spki(issuer["tbs_certificate"]["subject_public_key_info"].dump())
    verify_signature(key, cert["tbs_certificate"].dump(), cert["signature_value"].native,
                     cert["signature_algorithm"])


def verify_csr(request: csr.CertificationRequest) -> PublicKey:
    """Check the CSR's proof of possession; return its public key."""
    info = request["certification_request_info"]
    return verify_csr_parts(info["subject_pk_info"].dump(), info.dump(),
                            request["signature"].native, request["signature_algorithm"])


def verify_csr_parts(spki: bytes, info: bytes, signature: bytes,
                     signature_algorithm: SignatureAlgorithm | object) -> PublicKey:
    """``verify_csr`` over a request's parts as octets (its SubjectPublicKeyInfo, its signed
    CertificationRequestInfo, the signature), the algorithm as a ``SignatureAlgorithm`` or as
    found in the structure; return the public key."""
    key = PublicKey.from_spki(spki)
    try:
        if isinstance(signature_algorithm, SignatureAlgorithm):
            key.verify(signature, info, signature_algorithm)
        else:
            verify_signature(key, info, signature, signature_algorithm)
    except InvalidSignature:
        raise InvalidSignature(
            "CSR signature does not verify: no proof of possession of the private key"
        ) from None
    return key


def verify_crl_signature(crl_obj: crl.CertificateList, issuer: x509.Certificate) -> None:
    key = PublicKey.from_spki(issuer["tbs_certificate"]["subject_public_key_info"].dump())
    verify_signature(key, crl_obj["tbs_cert_list"].dump(), crl_obj["signature"].native,
                     crl_obj["signature_algorithm"])
