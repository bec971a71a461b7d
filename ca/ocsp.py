"""The OCSP responder (RFC 6960, with the RFC 5019 lightweight profile): request DER in,
response DER out.

``respond`` is a pure function: it parses the request (``ca.ocsp_request``), asks ``status_lookup``
about each serial, and signs the answer through a key handle (normally a delegated responder
certificate of profile ``ocsp-signer``). It never raises on bad input: a request that cannot be
parsed gets an unsigned ``malformedRequest`` response, a request for certificates of another
CA gets ``unauthorized``, and a failure while signing gets ``internalError``.

``OcspResponder`` is the same logic with the per-issuer constants computed once and an optional
``ResponseCache`` in front (see ``ca.ocsp_cache``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from asn1crypto import algos, core
from asn1crypto import ocsp as asn1ocsp
from asn1crypto import x509 as asn1x509

from ca import ocsp_der as der
from ca.ocsp_request import (
    MAX_CERT_IDS,
    MAX_NONCE_OCTETS,
    CertId,
    OcspError,
    ParsedRequest,
    parse_request,
)
from ca.records import CertificateStatus, Status
from sscard.crypto.algorithms import SignatureAlgorithm
from sscard.crypto.hashes import digest
from sscard.keys.base import KeyHandle

if TYPE_CHECKING:
    from ca.ocsp_cache import ResponseCache

# the request side lives in ca.ocsp_request; its names are part of this module's interface
__all__ = [
    "CERT_ID_HASHES", "DEFAULT_VALIDITY", "MAX_CERT_IDS", "MAX_NONCE_OCTETS", "CertId",
    "OcspError", "OcspResponder", "ParsedRequest", "StatusLookup", "error_response",
    "parse_request", "respond",
]

log = logging.getLogger(__name__)

#: CertID hash algorithms we can match (asn1crypto names); SM3 for GM/T clients.
CERT_ID_HASHES = ("sha1", "sha256", "sha384", "sha512", "sm3")
#: How long a "good"/"revoked" answer stays valid for relying parties (nextUpdate - thisUpdate).
DEFAULT_VALIDITY = timedelta(hours=1)

#: Looks a serial number up in the CA's database (``CertificateAuthority.status``); called once
#: per CertID that names our issuer.
StatusLookup = Callable[[int], CertificateStatus]


@functools.cache  # a handful of constant answers
def error_response(status: str) -> bytes:
    """An unsigned OCSPResponse carrying only an error status (RFC 6960 §4.2.1)."""
    return asn1ocsp.OCSPResponse({"response_status": status}).dump()


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

    def is_ours(self, cert_id: CertId) -> bool:
        """True when the CertID's issuer name and key hashes are those of our issuer."""
        expected = self._issuer_hashes.get(cert_id.hash_algorithm)
        return expected is not None and (
            cert_id.issuer_name_hash, cert_id.issuer_key_hash) == expected

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
                status, this_update = self.lookup(cert_id.serial_number, now, token)
            else:
                status, this_update = CertificateStatus(cert_id.serial_number,
                                                        Status.UNKNOWN), now
            next_update = this_update + self.validity
            earliest_next = min(earliest_next, next_update)
            singles.append(self._single_response(cert_id, status, this_update, next_update))
        if matched == 0:
            # RFC 5019 §2.2.3: no status information for anything asked about
            raise OcspError("unauthorized", "request names no certificate of this issuer")
        tbs = der.response_data(self._responder_id_der, now, singles, parsed.nonce)
        signature = self.signer.sign(tbs, self.signature_algorithm)
        response = der.successful_response(tbs, self._sig_alg_der, signature, self._certs_der)
        return response, earliest_next

    @staticmethod
    def _single_response(
        cert_id: CertId,
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
        return der.single_response(cert_id.der, cert_status, this_update, next_update,
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
