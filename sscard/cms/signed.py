"""CMS SignedData (RFC 5652 §5, GM/T 0010 §8): attached or detached, signed by any key handle.

The signature covers the signed attributes (content type, message digest, signing time and the
ESS signing-certificate-v2 attribute of RFC 5035, which binds the signature to the signer's
certificate); an RFC 3161 time-stamp token over the signature value can be added as the
unsigned attribute id-aa-timeStampToken. The time-stamp transport is the caller's: a function
taking a TimeStampReq DER and returning the TimeStampResp DER.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms, tsp, x509

from sscard.cms.content_types import Flavour
from sscard.cms.errors import CmsBuildError
from sscard.cms.signed_template import SignedDataTemplate
from sscard.cms.timestamp import TimeStamper, fetch_token
from sscard.crypto.algorithms import SignatureAlgorithm
from sscard.crypto.hashes import digest
from sscard.crypto.sm2 import DEFAULT_UID
from sscard.keys.base import KeyHandle

#: ``bytes -> bytes``: TimeStampReq DER in, TimeStampResp DER out (HTTP, in-process, ...)
TokenFetcher = Callable[[bytes], bytes]


def digest_name_for(algorithm: SignatureAlgorithm) -> str:
    """The message-digest algorithm CMS pairs with a signature algorithm (RFC 8419: Ed25519
    uses SHA-512 for the message digest attribute)."""
    return algorithm.hash_name or "sha512"


def signing_certificate_v2(
    certificate: x509.Certificate, hash_name: str
) -> tsp.SigningCertificateV2:
    """RFC 5035 SigningCertificateV2 naming ``certificate`` by hash and issuer/serial."""
    ess: dict[str, object] = {
        "cert_hash": digest(hash_name, certificate.dump()),
        "issuer_serial": {
            "issuer": [x509.GeneralName(name="directory_name", value=certificate.issuer)],
            "serial_number": certificate.serial_number,
        },
    }
    if hash_name != "sha256":  # SHA-256 is the DEFAULT and DER leaves defaults out
        ess["hash_algorithm"] = {"algorithm": hash_name}
    return tsp.SigningCertificateV2({"certs": [ess]})


# asn1crypto re-encodes a certificate built in memory on every dump of its container; the hot
# path embeds parsed-from-DER twins. Bounded, and checked by identity, so always correct.
_MAX_CACHED = 256
_stable_certs: dict[int, tuple[x509.Certificate, x509.Certificate]] = {}


def _bounded_put(cache: dict[Any, Any], key: object, value: object) -> None:
    if len(cache) >= _MAX_CACHED:
        cache.clear()
    cache[key] = value


def stable(certificate: x509.Certificate) -> x509.Certificate:
    """A parsed-from-DER twin of ``certificate``, which asn1crypto embeds without re-encoding."""
    hit = _stable_certs.get(id(certificate))
    if hit is not None and hit[0] is certificate:
        return hit[1]
    twin = x509.Certificate.load(certificate.dump())
    _bounded_put(_stable_certs, id(certificate), (certificate, twin))
    return twin


def _check_key_matches(key: KeyHandle, certificate: x509.Certificate) -> None:
    if key.public_key().spki_der() != certificate.public_key.dump():
        raise CmsBuildError(
            f"the signing key {key.label or ''} does not match the certificate of "
            f"{certificate.subject.human_friendly}"
        )


def sign(
    content: bytes,
    key: KeyHandle,
    certificate: x509.Certificate,
    *,
    chain: Sequence[x509.Certificate] = (),
    detached: bool = False,
    algorithm: SignatureAlgorithm | None = None,
    flavour: Flavour = Flavour.RFC5652,
    signing_time: datetime | None = None,
    timestamper: TimeStamper | TokenFetcher | None = None,
    uid: bytes = DEFAULT_UID,
    check_key: bool = True,
) -> bytes:
    """Sign ``content``; returns the DER ContentInfo holding the SignedData.

    ``chain`` (the issuing CA certificates) goes into the certificates field after the signer's
    own. ``timestamper`` adds an RFC 3161 token over the signature. ``check_key`` compares the
    key with the certificate first (one public-key export; turn off on hot paths that checked
    once).
    """
    if not isinstance(content, bytes | bytearray):
        raise CmsBuildError("content to sign must be bytes")
    alg = algorithm or key.default_signature_algorithm
    if alg.key_type is not key.algorithm.key_type:
        raise CmsBuildError(f"{alg.name} does not fit the signing key ({key.algorithm.value})")
    if check_key:
        _check_key_matches(key, certificate)
    when = signing_time or datetime.now(UTC)
    template = _template(certificate, tuple(chain), alg, flavour)
    if timestamper is None:
        return template.sign(key, bytes(content), when, detached, uid)
    stamper = timestamper if isinstance(timestamper, TimeStamper) else TimeStamper(timestamper)

    def token_attribute(signature: bytes) -> bytes:
        # RFC 3161 Appendix A: the token is over the signature value, with the signer's hash
        token = fetch_token(stamper, signature, template.digest_name)
        return cms.CMSAttributes(
            [{"type": "signature_time_stamp_token", "values": [token]}]).dump()

    return template.sign(key, bytes(content), when, detached, uid, token_attribute)


_templates: dict[tuple[bytes, tuple[bytes, ...], SignatureAlgorithm, Flavour],
                 SignedDataTemplate] = {}


def _template(certificate: x509.Certificate, chain: tuple[x509.Certificate, ...],
              algorithm: SignatureAlgorithm, flavour: Flavour) -> SignedDataTemplate:
    cert, others = stable(certificate), tuple(stable(c) for c in chain)
    key = (cert.dump(), tuple(c.dump() for c in others), algorithm, flavour)
    template = _templates.get(key)
    if template is None:
        template = SignedDataTemplate(cert, others, algorithm, flavour)
        _bounded_put(_templates, key, template)
    return template


def add_timestamp_to_signer_info(
    info: cms.SignerInfo, timestamper: TimeStamper | TokenFetcher
) -> cms.SignerInfo:
    """A copy of ``info`` with an id-aa-timeStampToken over its signature value (RFC 3161
    Appendix A), hashed with the signer's digest algorithm."""
    stamper = timestamper if isinstance(timestamper, TimeStamper) else TimeStamper(timestamper)
    hash_name = info["digest_algorithm"]["algorithm"].native
    token = fetch_token(stamper, info["signature"].native, hash_name)
    copy = info.copy()
    copy["unsigned_attrs"] = cms.CMSAttributes(
        [{"type": "signature_time_stamp_token", "values": [token]}]
    )
    return copy


__all__ = [
    "TokenFetcher",
    "add_timestamp_to_signer_info",
    "digest_name_for",
    "sign",
    "signing_certificate_v2",
]
