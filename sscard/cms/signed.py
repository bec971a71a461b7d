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

from asn1crypto import cms, tsp, x509

from sscard.cms.content_types import Flavour, content_type
from sscard.cms.errors import CmsBuildError
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
    digest_name = digest_name_for(algorithm)
    ess_hash = "sm3" if algorithm.key_type is KeyType.SM2 else "sha256"
    attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": [inner_content_type]},
            {"type": "signing_time", "values": [_signing_time(signing_time)]},
            {"type": "message_digest", "values": [message_digest]},
            {"type": "signing_certificate_v2",
             "values": [signing_certificate_v2(certificate, ess_hash)]},
        ]
    )
    # RFC 5652 §5.4: the signature covers the attributes encoded as a SET OF (tag 0x31)
    encoded = attrs.dump()
    signature = key.sign(encoded, algorithm, uid)
    return cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={"issuer": certificate.issuer, "serial_number": certificate.serial_number},
            ),
            "digest_algorithm": {"algorithm": digest_name},
            "signed_attrs": cms.CMSAttributes.load(encoded),
            "signature_algorithm": _signature_algorithm_id(algorithm),
            "signature": signature,
        }
    )


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
    data_type = content_type("data", flavour)
    info = signer_info(
        key, certificate, digest(digest_name_for(alg), bytes(content)),
        inner_content_type=data_type, algorithm=alg,
        signing_time=signing_time or datetime.now(UTC), uid=uid,
    )
    if timestamper is not None:
        info = add_timestamp_to_signer_info(info, timestamper)
    encap: dict[str, object] = {"content_type": data_type}
    if not detached:
        encap["content"] = bytes(content)
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": digest_name_for(alg)}],
            "encap_content_info": encap,
            "certificates": [certificate, *chain],
            "signer_infos": [info],
        }
    )
    return cms.ContentInfo(
        {"content_type": content_type("signed_data", flavour), "content": signed}
    ).dump()


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
