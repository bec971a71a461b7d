"""The OCSP responder (RFC 6960, with the RFC 5019 lightweight profile): request DER in,
response DER out.

``respond`` is a pure function: it parses the request with asn1crypto, asks ``status_lookup``
about each serial, and signs the answer through a key handle (normally a delegated responder
certificate of profile ``ocsp-signer``). It never raises on bad input: a request that cannot be
parsed gets an unsigned ``malformedRequest`` response, a request for certificates of another
CA gets ``unauthorized``, and a failure while signing gets ``internalError``.

``OcspResponder`` is the same logic with the per-issuer constants computed once and an optional
``ResponseCache`` in front (see ``ca.ocsp_cache``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from asn1crypto import algos, core
from asn1crypto import ocsp as asn1ocsp
from asn1crypto import x509 as asn1x509

from ca import ocsp_der as der
from ca.records import CertificateStatus, Status
from sscard import asn1 as _asn1  # noqa: F401  (registers SM OIDs such as sm3)
from sscard.crypto.algorithms import SignatureAlgorithm
from sscard.crypto.hashes import digest
from sscard.keys.base import KeyHandle

if TYPE_CHECKING:
    from ca.ocsp_cache import ResponseCache

log = logging.getLogger(__name__)

#: CertID hash algorithms we can match (asn1crypto names); SM3 for GM/T clients.
CERT_ID_HASHES = ("sha1", "sha256", "sha384", "sha512", "sm3")
#: RFC 8954: a nonce of 0 or more than 32 octets is refused with malformedRequest.
MAX_NONCE_OCTETS = 32
#: More CertIDs than this in one request is refused (a cheap denial-of-service guard).
MAX_CERT_IDS = 64
#: How long a "good"/"revoked" answer stays valid for relying parties (nextUpdate - thisUpdate).
DEFAULT_VALIDITY = timedelta(hours=1)

#: Looks a serial number up in the CA's database (``CertificateAuthority.status``); called once
#: per CertID that names our issuer.
StatusLookup = Callable[[int], CertificateStatus]


class OcspError(Exception):
    """A request this responder will not answer with certificate statuses.

    ``status`` is the OCSPResponseStatus name that goes back instead (asn1crypto spelling).
    """

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def error_response(status: str) -> bytes:
    """An unsigned OCSPResponse carrying only an error status (RFC 6960 §4.2.1)."""
    return asn1ocsp.OCSPResponse({"response_status": status}).dump()


@dataclass(frozen=True)
class ParsedRequest:
    """The parts of an OCSPRequest the responder acts on."""

    cert_ids: tuple[asn1ocsp.CertId, ...]
    #: the nonce extension value (the inner OCTET STRING), to be echoed; None when not asked
    nonce: core.OctetString | None


def parse_request(request_der: bytes) -> ParsedRequest:
    """Parse and check an OCSPRequest; raise ``OcspError`` naming what is wrong."""
    try:
        request = asn1ocsp.OCSPRequest.load(request_der, strict=True)
        tbs = request["tbs_request"]
        if tbs["version"].native != "v1":
            raise OcspError("malformed_request", f"unsupported request version {tbs['version']}")
        cert_ids = tuple(item["req_cert"] for item in tbs["request_list"])
        for cert_id in cert_ids:
            # force the lazy parser over every field now, so garbage is caught here
            cert_id["hash_algorithm"]["algorithm"].dotted  # noqa: B018
            cert_id["issuer_name_hash"].native  # noqa: B018
            cert_id["issuer_key_hash"].native  # noqa: B018
            cert_id["serial_number"].native  # noqa: B018
            cert_id["hash_algorithm"]["parameters"].native  # noqa: B018  (echoed as sent)
        nonce: core.OctetString | None = None
        for ext in tbs["request_extensions"] or []:
            name = ext["extn_id"].native
            if name == "nonce":
                nonce = ext["extn_value"].parsed
                length = len(nonce.native)
                if not 1 <= length <= MAX_NONCE_OCTETS:
                    raise OcspError(
                        "malformed_request",
                        f"nonce of {length} octets (RFC 8954 allows 1 to {MAX_NONCE_OCTETS})",
                    )
            elif ext["critical"].native and name not in ("acceptable_responses",):
                raise OcspError(
                    "malformed_request", f"unsupported critical request extension {name}"
                )
            elif name == "acceptable_responses":
                accepted = {r.native for r in ext["extn_value"].parsed}
                if "basic_ocsp_response" not in accepted:
                    raise OcspError(
                        "unauthorized", "client does not accept id-pkix-ocsp-basic responses"
                    )
    except OcspError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError) as exc:
        raise OcspError("malformed_request", f"request is not a DER OCSPRequest: {exc}") from None
    if not cert_ids:
        raise OcspError("malformed_request", "request names no certificate")
    if len(cert_ids) > MAX_CERT_IDS:
        raise OcspError(
            "malformed_request", f"request names {len(cert_ids)} certificates (max {MAX_CERT_IDS})"
        )
    return ParsedRequest(cert_ids, nonce)


def _whole_seconds(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("OCSP times must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)


class OcspResponder:
    """Answers OCSP requests about the certificates one issuer signed.

    ``signer_cert`` is the delegated responder certificate (issued by ``issuer_cert`` with the
    OCSPSigning EKU and id-pkix-ocsp-nocheck) or ``issuer_cert`` itself; ``signer`` holds its key.
    """

    def __init__(
        self,
        signer: KeyHandle,
        signer_cert: asn1x509.Certificate,
        issuer_cert: asn1x509.Certificate,
        status_lookup: StatusLookup,
        *,
        validity: timedelta = DEFAULT_VALIDITY,
        signature_algorithm: SignatureAlgorithm | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        if signer.public_key().spki_der() != signer_cert.public_key.dump():
            raise ValueError(
                f"the responder key {signer.label} does not match the responder certificate "
                f"{signer_cert.subject.human_friendly}"
            )
        if signer_cert.issuer.dump() != issuer_cert.subject.dump() and (
            signer_cert.dump() != issuer_cert.dump()
        ):
            raise ValueError(
                "the responder certificate was not issued by the issuer it answers for "
                f"({signer_cert.issuer.human_friendly} != {issuer_cert.subject.human_friendly})"
            )
        self.signer = signer
        self.signer_cert = signer_cert
        self.issuer_cert = issuer_cert
        self.status_lookup = status_lookup
        self.validity = validity
        self.cache = cache
        self.signature_algorithm = signature_algorithm or signer.default_signature_algorithm
        self._sig_alg_der = algos.SignedDigestAlgorithm(
            self.signature_algorithm.asn1_algorithm_identifier()
        ).dump()
        # a delegated responder sends its certificate; the issuer itself need not
        self._certs_der = (
            der.certs_field([signer_cert.dump()])
            if signer_cert.dump() != issuer_cert.dump() else None
        )
        key_bits = bytes(signer_cert.public_key["public_key"])
        # RFC 5019 §2.2.3: the responder is named by the SHA-1 hash of its public key
        self._responder_id_der = asn1ocsp.ResponderId(
            name="by_key", value=core.OctetString(hashlib.sha1(key_bits).digest())  # noqa: S324
        ).dump()
        name_der = issuer_cert.subject.dump()
        issuer_key = bytes(issuer_cert.public_key["public_key"])
        # (name hash, key hash) per hash algorithm: what a CertID for our issuer must carry
        self._issuer_hashes = {
            alg: (digest(alg, name_der), digest(alg, issuer_key)) for alg in CERT_ID_HASHES
        }

    # -- matching -----------------------------------------------------------------------

    def is_ours(self, cert_id: asn1ocsp.CertId) -> bool:
        """True when the CertID's issuer name and key hashes are those of our issuer."""
        alg = cert_id["hash_algorithm"]["algorithm"].native
        expected = self._issuer_hashes.get(alg)
        if expected is None:
            return False
        return (
            cert_id["issuer_name_hash"].native == expected[0]
            and cert_id["issuer_key_hash"].native == expected[1]
        )

    def lookup(
        self, serial: int, now: datetime, token: int = 0
    ) -> tuple[CertificateStatus, datetime]:
        """The status of ``serial`` and the time it was read (thisUpdate), via the cache."""
        if self.cache is not None:
            return self.cache.status(serial, now, self.status_lookup, token)
        return self.status_lookup(serial), now

    # -- answering ----------------------------------------------------------------------

    def respond(self, request_der: bytes, now: datetime | None = None) -> bytes:
        """Answer one DER OCSPRequest; never raises for anything the client sent."""
        return self.respond_with_expiry(request_der, now)[0]

    def respond_with_expiry(
        self, request_der: bytes, now: datetime | None = None,
        parsed: ParsedRequest | None = None,
    ) -> tuple[bytes, datetime | None]:
        """The DER OCSPResponse and its earliest nextUpdate (None for error responses).

        ``parsed``: ``request_der`` already parsed by the caller (who picked this responder by
        it), so that it is not parsed twice."""
        moment = _whole_seconds(now or datetime.now(UTC))
        token = self.cache.begin() if self.cache is not None else 0
        if self.cache is not None:
            # the same request bytes without a nonce deserve the same answer while it is fresh
            hit = self.cache.response(request_der, moment)
            if hit is not None:
                return hit
        try:
            if parsed is None:
                parsed = parse_request(request_der)
            response, next_update = self._answer(parsed, moment, token)
        except OcspError as exc:
            log.info("OCSP request refused (%s): %s", exc.status, exc)
            return error_response(exc.status), None
        except Exception:
            # the key handle (HSM, card) or the status store failed: not the client's fault,
            # and a responder must answer internalError rather than fail the HTTP request
            log.exception("OCSP responder failure")
            return error_response("internal_error"), None
        if self.cache is not None and parsed.nonce is None:
            self.cache.store_response(request_der, response, moment, next_update, token)
        return response, next_update

    def _answer(
        self, parsed: ParsedRequest, now: datetime, token: int
    ) -> tuple[bytes, datetime]:
        singles = []
        matched = 0
        earliest_next = now + self.validity
        for cert_id in parsed.cert_ids:
            if self.is_ours(cert_id):
                matched += 1
                status, this_update = self.lookup(cert_id["serial_number"].native, now, token)
            else:
                status, this_update = CertificateStatus(cert_id["serial_number"].native,
                                                        Status.UNKNOWN), now
            next_update = this_update + self.validity
            earliest_next = min(earliest_next, next_update)
            singles.append(self._single_response(cert_id, status, this_update, next_update))
        if matched == 0:
            # RFC 5019 §2.2.3: no status information for anything asked about
            raise OcspError("unauthorized", "request names no certificate of this issuer")
        nonce_der = parsed.nonce.dump() if parsed.nonce is not None else None
        tbs = der.response_data(self._responder_id_der, now, singles, nonce_der)
        signature = self.signer.sign(tbs, self.signature_algorithm)
        response = der.successful_response(tbs, self._sig_alg_der, signature, self._certs_der)
        return response, earliest_next

    @staticmethod
    def _single_response(
        cert_id: asn1ocsp.CertId,
        status: CertificateStatus,
        this_update: datetime,
        next_update: datetime,
    ) -> bytes:
        invalidity = None
        if status.status is Status.GOOD:
            cert_status = der.GOOD
        elif status.status is Status.REVOKED:
            if status.revocation_time is None:
                raise ValueError(f"revoked serial {status.serial:x} has no revocation time")
            reason = status.reason.value if status.reason is not None else None
            cert_status = der.revoked(_whole_seconds(status.revocation_time), reason)
            if status.invalidity_date is not None:
                invalidity = _whole_seconds(status.invalidity_date)
        else:
            cert_status = der.UNKNOWN
        # the CertID is echoed as received, so the client's encoding matches byte for byte
        return der.single_response(cert_id.dump(), cert_status, this_update, next_update,
                                   invalidity)


def respond(
    request_der: bytes,
    status_lookup: StatusLookup,
    signer: KeyHandle,
    signer_cert: asn1x509.Certificate,
    issuer_cert: asn1x509.Certificate,
    now: datetime,
    *,
    validity: timedelta = DEFAULT_VALIDITY,
) -> bytes:
    """Answer one DER OCSPRequest with a DER OCSPResponse (no caching)."""
    try:
        responder = OcspResponder(signer, signer_cert, issuer_cert, status_lookup,
                                  validity=validity)
    except ValueError as exc:
        log.error("OCSP responder misconfigured: %s", exc)
        return error_response("internal_error")
    return responder.respond(request_der, now)
