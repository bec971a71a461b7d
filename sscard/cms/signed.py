"""CMS SignedData (RFC 5652 §5, GM/T 0010 §8): attached or detached, signed by any key handle.

The signature covers the signed attributes (content type, message digest, signing time and the
ESS signing-certificate-v2 attribute of RFC 5035, which binds the signature to the signer's
certificate); an RFC 3161 time-stamp token over the signature value can be added as the
unsigned attribute id-aa-timeStampToken. The time-stamp transport is the caller's: a function
taking a TimeStampReq DER and returning the TimeStampResp DER.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms, tsp, x509

from sscard.cms.content_types import Flavour, content_type
from sscard.cms.errors import CmsBuildError
from sscard.cms.signed_template import SignedDataTemplate
from sscard.cms.timestamp import TimeStamper, fetch_token
from sscard.crypto.algorithms import KeyType, SignatureAlgorithm
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


def _signing_time(when: datetime) -> cms.Time:
    when = when.astimezone(UTC).replace(microsecond=0)
    kind = "utc_time" if when.year < 2050 else "generalized_time"
    return cms.Time(name=kind, value=when)


# asn1crypto re-encodes objects built from Python values on every dump, and the signing
# certificate attribute (a certificate hash and an issuer name) is costly to build: the hot
# path reuses encodings that cannot change. Bounded, and keyed by value, so always correct.
_MAX_CACHED = 256
_content_type_attrs: dict[str, bytes] = {}
_ess_attrs: dict[tuple[bytes, str], bytes] = {}
_stable_certs: dict[int, tuple[x509.Certificate, x509.Certificate]] = {}
_time_attr: list[tuple[datetime, bytes]] = []


def _bounded_put(cache: dict[Any, Any], key: object, value: object) -> None:
    if len(cache) >= _MAX_CACHED:
        cache.clear()
    cache[key] = value


def _content_type_attr(name: str) -> bytes:
    der = _content_type_attrs.get(name)
    if der is None:
        der = cms.CMSAttribute({"type": "content_type", "values": [name]}).dump()
        _bounded_put(_content_type_attrs, name, der)
    return der


def _ess_attr(certificate: x509.Certificate, hash_name: str) -> bytes:
    key = (certificate.dump(), hash_name)
    der = _ess_attrs.get(key)
    if der is None:
        der = cms.CMSAttribute({"type": "signing_certificate_v2",
                                "values": [signing_certificate_v2(certificate, hash_name)]}).dump()
        _bounded_put(_ess_attrs, key, der)
    return der


def _signing_time_attr(when: datetime) -> bytes:
    when = when.astimezone(UTC).replace(microsecond=0)
    if _time_attr and _time_attr[0][0] == when:
        return _time_attr[0][1]
    der = cms.CMSAttribute({"type": "signing_time", "values": [_signing_time(when)]}).dump()
    _time_attr[:] = [(when, der)]
    return der


def stable(certificate: x509.Certificate) -> x509.Certificate:
    """A parsed-from-DER twin of ``certificate``, which asn1crypto embeds without re-encoding
    (a certificate built in memory is re-encoded on every dump of its container)."""
    hit = _stable_certs.get(id(certificate))
    if hit is not None and hit[0] is certificate:
        return hit[1]
    twin = x509.Certificate.load(certificate.dump())
    _bounded_put(_stable_certs, id(certificate), (certificate, twin))
    return twin


def _signature_algorithm_id(alg: SignatureAlgorithm) -> cms.SignedDigestAlgorithm:
    return cms.SignedDigestAlgorithm(alg.asn1_algorithm_identifier())


def signer_info(
    key: KeyHandle,
    certificate: x509.Certificate,
    message_digest: bytes,
    *,
    inner_content_type: str,
    algorithm: SignatureAlgorithm,
    signing_time: datetime,
    uid: bytes = DEFAULT_UID,
) -> cms.SignerInfo:
    """One SignerInfo over the given message digest (the hash of the content)."""
    certificate = stable(certificate)
    ess_hash = "sm3" if algorithm.key_type is KeyType.SM2 else "sha256"
    attrs = cms.CMSAttributes([
        cms.CMSAttribute.load(_content_type_attr(inner_content_type)),
        cms.CMSAttribute.load(_signing_time_attr(signing_time)),
        cms.CMSAttribute({"type": "message_digest", "values": [message_digest]}),
        cms.CMSAttribute.load(_ess_attr(certificate, ess_hash)),
    ])
    # RFC 5652 §5.4: the signature covers the attributes encoded as a SET OF (tag 0x31)
    encoded = attrs.dump()
    signature = key.sign(encoded, algorithm, uid)
    parts = _parts(certificate, algorithm)
    return cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier.load(parts.sid),
            "digest_algorithm": cms.DigestAlgorithm.load(parts.digest_algorithm),
            "signed_attrs": cms.CMSAttributes.load(encoded),
            "signature_algorithm": cms.SignedDigestAlgorithm.load(parts.signature_algorithm),
            "signature": signature,
        }
    )


@dataclass(frozen=True)
class _Parts:
    """Encodings that depend only on the signer's certificate and algorithm."""

    sid: bytes
    digest_algorithm: bytes
    signature_algorithm: bytes


_parts_cache: dict[tuple[bytes, SignatureAlgorithm], _Parts] = {}


def _parts(certificate: x509.Certificate, algorithm: SignatureAlgorithm) -> _Parts:
    key = (certificate.dump(), algorithm)
    parts = _parts_cache.get(key)
    if parts is None:
        parts = _Parts(
            sid=cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={"issuer": certificate.issuer,
                       "serial_number": certificate.serial_number}).dump(),
            digest_algorithm=cms.DigestAlgorithm(
                {"algorithm": digest_name_for(algorithm)}).dump(),
            signature_algorithm=_signature_algorithm_id(algorithm).dump(),
        )
        _bounded_put(_parts_cache, key, parts)
    return parts


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
    if timestamper is None:
        return _template(certificate, tuple(chain), alg, flavour).sign(
            key, bytes(content), when, detached, uid)
    data_type = content_type("data", flavour)
    info = signer_info(
        key, certificate, digest(digest_name_for(alg), bytes(content)),
        inner_content_type=data_type, algorithm=alg,
        signing_time=when, uid=uid,
    )
    info = add_timestamp_to_signer_info(info, timestamper)
    encap: dict[str, object] = {"content_type": data_type}
    if not detached:
        encap["content"] = bytes(content)
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [cms.DigestAlgorithm.load(
                _parts(stable(certificate), alg).digest_algorithm)],
            "encap_content_info": encap,
            "certificates": [stable(c) for c in (certificate, *chain)],
            "signer_infos": [info],
        }
    )
    return cms.ContentInfo(
        {"content_type": content_type("signed_data", flavour), "content": signed}
    ).dump()


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
    "signer_info",
    "signing_certificate_v2",
]
