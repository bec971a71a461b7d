"""The RFC 3161 time-stamp authority: TimeStampReq DER in, TimeStampResp DER out.

The token is a CMS SignedData over a TSTInfo, signed through a key handle (SM2, ECDSA or RSA)
whose certificate carries the critical extendedKeyUsage timeStamping (profile ``tsa``), with the
ESSCertIDv2 signing-certificate attribute (RFC 5816) binding the token to that certificate.
Serial numbers come from a ``SerialSource``; ``FileSerialCounter`` is a crash-safe persistent
counter shared by every process on the machine.

Nothing the client sends makes ``respond`` raise: a request we cannot or will not serve gets a
``rejection`` PKIStatusInfo whose failInfo names the problem (RFC 3161 §2.4.2).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1x509

from sscard import asn1 as _asn1  # noqa: F401  (registers sm3 and sm2_sm3)
from sscard.crypto.algorithms import KeyType, SignatureAlgorithm
from sscard.crypto.hashes import digest
from sscard.keys.base import KeyHandle

log = logging.getLogger(__name__)

#: message-imprint hash algorithms accepted, with their digest sizes
IMPRINT_HASHES = {"sha256": 32, "sha384": 48, "sha512": 64, "sm3": 32, "sha1": 20}
#: RFC 3161 leaves the nonce size open; more than this is refused as a malformed request
MAX_NONCE_BITS = 512
#: an OID under the project's arc would belong here in production; configurable per TSA
DEFAULT_POLICY = "1.2.156.10260.4.1.100"


class TimeStampResp(core.Sequence):
    """RFC 3161 TimeStampResp with the token OPTIONAL, as the RFC has it.

    (asn1crypto 1.5 declares ``time_stamp_token`` mandatory, so it cannot encode a rejection.)
    """

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class Rejection(Exception):
    """A request the TSA refuses; ``fail_info`` is the RFC 3161 PKIFailureInfo bit name."""

    def __init__(self, fail_info: str, message: str) -> None:
        super().__init__(message)
        self.fail_info = fail_info


class TsaConfigError(ValueError):
    """A TSA key/certificate pair that cannot be used for time-stamping; says why."""


# -- serial numbers ----------------------------------------------------------------------


class SerialSource(Protocol):
    def next_serial(self) -> int: ...


@dataclass
class FileSerialCounter:
    """Unique serials from a counter file, safe across processes and crashes.

    Each process reserves a block of ``block`` serials by advancing the file (under ``flock``,
    written and fsynced before any serial of the block is used) and then hands them out from
    memory. A crash wastes the rest of a block; it can never hand out a serial twice.
    """

    path: Path
    block: int = 1000
    _next: int = field(default=0, init=False)
    _limit: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def next_serial(self) -> int:
        with self._lock:
            if self._next >= self._limit:
                self._next, self._limit = self._reserve()
            serial = self._next
            self._next += 1
            return serial

    def _reserve(self) -> tuple[int, int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            text = os.read(fd, 64).decode("ascii").strip()
            try:
                start = int(text) if text else 1
            except ValueError:
                raise TsaConfigError(
                    f"TSA serial counter {self.path} is corrupt ({text!r})"
                ) from None
            limit = start + self.block
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{limit}\n".encode("ascii"))
            os.fsync(fd)
            return start, limit
        finally:
            os.close(fd)  # releases the flock


# -- the authority -----------------------------------------------------------------------


def _check_tsa_certificate(key: KeyHandle, cert: asn1x509.Certificate) -> None:
    """RFC 3161 §2.3: the TSA certificate's only EKU is timeStamping, and it is critical."""
    if key.public_key().spki_der() != cert.public_key.dump():
        raise TsaConfigError(f"the TSA key {key.label} does not match the TSA certificate")
    eku = cert.extended_key_usage_value
    if eku is None or eku.native != ["time_stamping"]:
        raise TsaConfigError(
            "the TSA certificate must have extendedKeyUsage timeStamping and nothing else"
        )
    if "extended_key_usage" not in cert.critical_extensions:
        raise TsaConfigError("the TSA certificate's extendedKeyUsage must be critical")


class TimeStampAuthority:
    """Issues RFC 3161 time-stamp tokens."""

    def __init__(
        self,
        signer: KeyHandle,
        certificate: asn1x509.Certificate,
        serials: SerialSource,
        *,
        chain: tuple[asn1x509.Certificate, ...] = (),
        policy: str = DEFAULT_POLICY,
        accepted_policies: tuple[str, ...] = (),
        accuracy: timedelta = timedelta(seconds=1),
        signature_algorithm: SignatureAlgorithm | None = None,
    ) -> None:
        _check_tsa_certificate(signer, certificate)
        self.signer = signer
        self.certificate = certificate
        self.chain = chain
        self.serials = serials
        self.policy = policy
        self.accepted_policies = {policy, *accepted_policies}
        self.accuracy = accuracy
        self.signature_algorithm = signature_algorithm or signer.default_signature_algorithm
        hash_name = self.signature_algorithm.hash_name
        if hash_name is None:
            raise TsaConfigError(f"{self.signature_algorithm.name} cannot sign CMS attributes")
        self.digest_name = hash_name
        # the signing-certificate attribute uses the signature's hash family (SM3 with SM2)
        self._cert_id_hash = "sm3" if signer.algorithm.key_type is KeyType.SM2 else "sha256"
        self._signing_certificate = self._signing_certificate_attribute()

    def _signing_certificate_attribute(self) -> tsp.SigningCertificateV2:
        cert = self.certificate
        ess: dict[str, object] = {
            "cert_hash": digest(self._cert_id_hash, cert.dump()),
            "issuer_serial": {
                "issuer": [asn1x509.GeneralName(name="directory_name", value=cert.issuer)],
                "serial_number": cert.serial_number,
            },
        }
        if self._cert_id_hash != "sha256":  # sha256 is the DEFAULT and must then be absent
            ess["hash_algorithm"] = {"algorithm": self._cert_id_hash}
        return tsp.SigningCertificateV2({"certs": [ess]})

    # -- request checking ---------------------------------------------------------------

    def parse_request(self, request_der: bytes) -> tsp.TimeStampReq:
        """Parse and check a TimeStampReq; raise ``Rejection`` naming what is wrong."""
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            request.native  # noqa: B018  (forces the lazy parser over everything now)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError) as exc:
            raise Rejection("bad_data_format", f"not a DER TimeStampReq: {exc}") from None
        if request["version"].native != "v1":
            raise Rejection("bad_data_format", f"unsupported version {request['version'].native}")
        imprint = request["message_imprint"]
        hash_name = imprint["hash_algorithm"]["algorithm"].native
        size = IMPRINT_HASHES.get(hash_name)
        if size is None:
            raise Rejection("bad_alg", f"unsupported message-imprint hash {hash_name}")
        if len(imprint["hashed_message"].native) != size:
            raise Rejection(
                "bad_data_format",
                f"message imprint is {len(imprint['hashed_message'].native)} octets, "
                f"{hash_name} gives {size}",
            )
        policy = request["req_policy"].native
        if policy is not None and request["req_policy"].dotted not in self.accepted_policies:
            raise Rejection("unaccepted_policy", f"policy {policy} is not offered")
        nonce = request["nonce"].native
        if nonce is not None and (nonce < 0 or nonce.bit_length() > MAX_NONCE_BITS):
            raise Rejection(
                "bad_request", f"nonce must be a non-negative integer of {MAX_NONCE_BITS} bits"
            )
        if request["extensions"].native:
            names = ", ".join(e["extn_id"].dotted for e in request["extensions"])
            raise Rejection("unaccepted_extensions", f"no request extensions supported ({names})")
        return request

    # -- answering ----------------------------------------------------------------------

    def respond(self, request_der: bytes, now: datetime | None = None) -> bytes:
        """Answer one DER TimeStampReq; never raises for anything the client sent."""
        moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        try:
            request = self.parse_request(request_der)
            token = self._token(request, moment)
        except Rejection as exc:
            log.info("time-stamp request rejected (%s): %s", exc.fail_info, exc)
            return rejection(exc.fail_info, str(exc))
        except Exception:
            # the key handle or the serial store failed: say so without blaming the client
            log.exception("TSA failure")
            return rejection("system_failure", "the time-stamp authority could not sign")
        return TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()

    def _token(self, request: tsp.TimeStampReq, now: datetime) -> cms.ContentInfo:
        info: dict[str, object] = {
            "version": "v1",
            "policy": self.policy,
            "message_imprint": request["message_imprint"].copy(),
            "serial_number": self.serials.next_serial(),
            "gen_time": now,
            "accuracy": _accuracy(self.accuracy),
            "tsa": asn1x509.GeneralName(name="directory_name", value=self.certificate.subject),
        }
        if request["nonce"].native is not None:
            info["nonce"] = request["nonce"].native
        tst_info = tsp.TSTInfo(info)
        tst_der = tst_info.dump()

        attrs = [
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "signing_time", "values": [cms.Time(name="utc_time", value=now)]},
            {"type": "message_digest", "values": [digest(self.digest_name, tst_der)]},
            {"type": "signing_certificate_v2", "values": [self._signing_certificate]},
        ]
        # the signature covers the attributes DER-encoded as a SET OF (tag 0x31), RFC 5652 §5.4
        signed_attrs = cms.CMSAttributes(attrs)
        signature = self.signer.sign(signed_attrs.dump(), self.signature_algorithm)

        digest_alg = algos.DigestAlgorithm({"algorithm": self.digest_name})
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number",
                    value={
                        "issuer": self.certificate.issuer,
                        "serial_number": self.certificate.serial_number,
                    },
                ),
                "digest_algorithm": digest_alg,
                "signed_attrs": cms.CMSAttributes.load(signed_attrs.dump()),
                "signature_algorithm": self.signature_algorithm.asn1_algorithm_identifier(),
                "signature": signature,
            }
        )
        signed_data: dict[str, object] = {
            "version": "v3",
            "digest_algorithms": [digest_alg],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": core.ParsableOctetString(tst_der),
            },
            "signer_infos": [signer_info],
        }
        if request["cert_req"].native:
            signed_data["certificates"] = [self.certificate, *self.chain]
        return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})


def _accuracy(accuracy: timedelta) -> dict[str, int]:
    micros_total = int(accuracy / timedelta(microseconds=1))
    seconds, rest = divmod(micros_total, 1_000_000)
    millis, micros = divmod(rest, 1000)
    result = {}
    if seconds:
        result["seconds"] = seconds
    if millis:
        result["millis"] = millis
    if micros:
        result["micros"] = micros
    return result


def rejection(fail_info: str, message: str) -> bytes:
    """A TimeStampResp refusing the request, with a failInfo bit and a reason text."""
    return TimeStampResp(
        {
            "status": {
                "status": "rejection",
                "status_string": [message[:200]],
                "fail_info": tsp.PKIFailureInfo({fail_info}),
            }
        }
    ).dump()
