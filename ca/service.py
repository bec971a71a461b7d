"""The CA's HTTP service (Flask app factory): OCSP, CRL and certificate downloads, the TSA, and
issuance and revocation for authenticated callers.

Public (anyone may ask, as relying parties must):

- ``POST /ocsp`` (``application/ocsp-request``) and ``GET /ocsp/<base64 request>`` (RFC 5019,
  with HTTP caching headers); errors in the request come back as OCSP error responses with
  HTTP 200, never as a 4xx/5xx;
- ``GET /crl/<ca>.crl`` (full CRL, DER), ``GET /crl/<ca>-delta.crl`` (delta CRL), the same with
  ``.pem``;
- ``GET /certs/<ca>.crt`` (DER), ``/certs/<ca>.pem``, ``/certs/chain.pem`` (issuing CA first,
  root last), ``/certs/ocsp.crt``, ``/certs/tsa.crt``;
- ``POST /tsa`` (``application/timestamp-query``), RFC 3161 over HTTP.

Authenticated (``/api/v1/...``, JSON in and out): issue from a CSR or for a public key and
subject (the KMC-made encryption key the RA certifies), revoke, read a status (``ca.client``
is the published client). A
caller proves itself with an API token (``Authorization: Bearer ...``) or by signing the request
with a key whose certificate this CA issued (``sscard.httpsig``; each signed request is
accepted once by all workers when ``replays`` is a store in the CA's database). The credential
maps to a principal of the CA's access file, and ``ca.authorization.decide`` says what that
principal may do (nothing by default; CA-level profiles never; officers never). Errors are RFC
9457 problem documents from one table (``PROBLEMS``). Anything else gets 401 (no or bad
credentials) or 403 naming the missing permission, and the refusal is logged on the
``ca.service.audit`` logger and recorded in the tamper-evident audit log.

The protocol logic lives in ``ca.ocsp`` and ``ca.tsa``; this module only translates HTTP.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from asn1crypto import crl as asn1crl
from asn1crypto import csr as asn1csr
from asn1crypto import x509 as asn1x509
from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.datastructures import EnvironHeaders
from werkzeug.http import HTTP_STATUS_CODES

from ca.authority import IssueRequest, ItemOutcome, Signer
from ca.authorization import (
    AccessConfig,
    ApiOperation,
    Principal,
    certificate_fits_profile,
    decide,
    hash_token,
    is_officer_certificate,
)
from ca.csr_reader import CsrParts, read_csr
from ca.errors import AlreadyRevoked, CAError, ProfileError, RequestRefused, UnknownCertificate
from ca.ocsp import OcspError, OcspResponder, ParsedRequest, error_response, parse_request
from ca.ocsp_cache import CACHE_HIT, REFRESH_FRACTION, ResponseCache
from ca.ocsp_generation import (
    GenerationSource,
    Throttled,
    authority_generation,
    authority_latest_revocation,
)
from ca.profile import Profile
from ca.records import (
    MAX_BATCH_ITEMS,
    CertificateStatus,
    IssuedCertificate,
    RevocationReason,
    Status,
    serial_from_hex,
    serial_to_hex,
)
from ca.tsa import FileSerialCounter, TimeStampAuthority, rejection
from sscard import httpops, httpsig, problem
from sscard.audit import AuditAction, AuditError, AuditLog, AuditUnavailable
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError
from sscard.jsonbody import JsonBodyError
from sscard.jsonbody import parse as parse_json
from sscard.x509.errors import X509Error
from sscard.x509.parse import load_csr
from sscard.x509.pem import der_to_pem
from sscard.x509.verify import verify_certificate_signature

log = logging.getLogger(__name__)
audit = logging.getLogger("ca.service.audit")

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
TSA_QUERY = "application/timestamp-query"
TSA_REPLY = "application/timestamp-reply"
JSON = "application/json"
#: RFC 5019 GET requests and POST bodies larger than this are refused unread
MAX_PROTOCOL_BODY = 64 * 1024
MAX_API_BODY = 256 * 1024


class CaBackend(Protocol):
    """What the service needs of ``ca.authority.CertificateAuthority``."""

    @property
    def name(self) -> str: ...

    @property
    def certificate(self) -> asn1x509.Certificate: ...

    def chain(self) -> list[asn1x509.Certificate]: ...

    def status(self, serial: int) -> CertificateStatus: ...

    def issue_from_csr(
        self, csr: asn1csr.CertificationRequest | CsrParts | bytes, profile: str,
        extra: Mapping[str, Any] | None = None, *, actor: str | None = None,
        request_id: str | None = None,
        claim: Callable[[sa.Connection], None] | None = None,
    ) -> IssuedCertificate: ...

    def issue_for_public_key(
        self, public_key: PublicKey, subject: asn1x509.Name | str, profile: str,
        extra: Mapping[str, Any] | None = None, *, actor: str | None = None,
        request_id: str | None = None,
        claim: Callable[[sa.Connection], None] | None = None,
    ) -> IssuedCertificate: ...

    def issue_each(
        self, requests: Sequence[IssueRequest], profile: str, *, actor: str | None = None,
        claim: Callable[[sa.Connection], None] | None = None,
    ) -> list[ItemOutcome]: ...

    def revoke(
        self, serial: int, reason: RevocationReason | str = ...,
        invalidity_date: datetime | None = None, *, actor: str | None = None,
    ) -> CertificateStatus: ...

    def build_crl(self, delta: bool = False) -> asn1crl.CertificateList: ...

    def ocsp_signer(self) -> Signer: ...

    def tsa_signer(self) -> Signer: ...

    def profile(self, name: str) -> Profile: ...

    def certificate_profile(self, serial: int) -> str | None: ...


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``create_app`` needs; no globals."""

    authority: CaBackend
    #: the principals (API tokens, service certificates) and what each may do; empty: nobody
    access: AccessConfig = field(default_factory=AccessConfig)
    ocsp_validity: timedelta = timedelta(hours=1)
    #: how often each process asks the database whether anything was revoked (seconds)
    revocation_check_interval: float = 0.2
    #: where the TSA keeps its serial counter; None disables the TSA endpoint
    tsa_serial_file: Path | None = None
    tsa_policy: str | None = None
    #: the CA's revocation generation; default: the authority's own, else no shared refresh
    generation: GenerationSource | None = None
    #: other CAs of the hierarchy (an online root) whose OCSP, CRLs and certificate to publish
    other_authorities: tuple[CaBackend, ...] = ()
    #: the tamper-evident audit log: refusals, issuance and revocation through the API
    audit_log: AuditLog | None = None
    #: signed requests already seen; default: a table in the authority's database
    replays: httpsig.ReplayStore | None = None

    @staticmethod
    def hash_token(token: str | bytes) -> str:
        return hash_token(token)


class ApiError(Exception):
    """An API failure with its HTTP status and a message naming the problem."""

    def __init__(self, status: int, code: str, message: str,
                 permission: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        #: for a 403: the permission the caller lacks
        self.permission = permission


# -- state shared by the blueprints ------------------------------------------------------


def renewal_time(certificate: asn1x509.Certificate, answer_validity: timedelta) -> datetime:
    """When a service signer must be replaced: answers it signs must not outlive it, and the CA
    hands out a new one a day before expiry."""
    not_after: datetime = certificate["tbs_certificate"]["validity"]["not_after"].native
    return not_after - max(answer_validity, timedelta(days=1))


class PublishedCA:
    """One CA whose OCSP answers, CRLs and certificate this worker publishes."""

    def __init__(self, authority: CaBackend, config: ServiceConfig,
                 generation: GenerationSource | None = None) -> None:
        self.authority = authority
        self.config = config
        source = generation or authority_generation(authority)
        self.generation: GenerationSource | None = (
            Throttled(source, config.revocation_check_interval) if source is not None else None
        )
        self._lock = threading.Lock()
        self._responder: OcspResponder | None = None
        self._renew_at = datetime.max.replace(tzinfo=UTC)
        self._crls: dict[bool, tuple[bytes, int | None, datetime]] = {}

    @property
    def name(self) -> str:
        return self.authority.name

    @property
    def responder(self) -> OcspResponder:
        """The OCSP responder, remade with a fresh responder certificate shortly before the
        current one expires (the ``ocsp-signer`` profile gives 90 days)."""
        responder = self._responder
        if responder is None or datetime.now(UTC) >= self._renew_at:
            with self._lock:
                if self._responder is None or datetime.now(UTC) >= self._renew_at:
                    signer = self.authority.ocsp_signer()
                    cache = ResponseCache(self.config.ocsp_validity, self.generation)
                    self._responder = OcspResponder(
                        signer.key, signer.certificate, self.authority.certificate,
                        self.authority.status, validity=self.config.ocsp_validity, cache=cache,
                    )
                    self._renew_at = renewal_time(signer.certificate, self.config.ocsp_validity)
                responder = self._responder
        return responder

    @property
    def cache(self) -> ResponseCache | None:
        """The OCSP cache, once the responder exists (it is made on the first request)."""
        return self._responder.cache if self._responder is not None else None

    def crl_der(self, delta: bool) -> bytes:
        """The current full or delta CRL: the CA's newest if it is fresh and no revocation
        came after it, else a newly built one (so a revocation shows in the next download)."""
        now = datetime.now(UTC)
        generation = self.generation() if self.generation is not None else None
        with self._lock:
            cached = self._crls.get(delta)
            if cached is not None and cached[1] == generation and now < cached[2]:
                return cached[0]
            der = self._newest_current_crl(delta, now) if cached is None else None
            if der is None:
                der = self._build_crl(delta)
            tbs = asn1crl.CertificateList.load(der)["tbs_cert_list"]
            this_update = tbs["this_update"].native
            next_update = tbs["next_update"].native or now
            self._crls[delta] = (der, generation, this_update + (next_update - this_update) / 2)
            return der

    def _newest_current_crl(self, delta: bool, now: datetime) -> bytes | None:
        latest = getattr(self.authority, "latest_crl_der", None)
        der = latest(delta) if callable(latest) else None
        if der is None:
            return None
        tbs = asn1crl.CertificateList.load(der)["tbs_cert_list"]
        this_update = tbs["this_update"].native
        next_update = tbs["next_update"].native
        if next_update is None or now >= this_update + (next_update - this_update) / 2:
            return None
        revoked_last = authority_latest_revocation(self.authority)
        if revoked_last is False or (
            isinstance(revoked_last, datetime) and revoked_last >= this_update
        ):
            return None
        return bytes(der)

    def _build_crl(self, delta: bool) -> bytes:
        build_der = getattr(self.authority, "build_crl_der", None)

        def build(kind_delta: bool) -> bytes:
            if callable(build_der):
                return bytes(build_der(kind_delta))
            return bytes(self.authority.build_crl(delta=kind_delta).dump())

        latest = getattr(self.authority, "latest_crl_der", None)
        if delta and callable(latest) and latest(False) is None:
            build(False)  # a delta CRL needs a full CRL as its base
        return build(delta)


def _replay_store(config: ServiceConfig) -> httpsig.ReplayStore:
    """The configured replay memory, else a table in the CA's own database (shared by every
    worker), else (an authority without a database: tests) this process's memory."""
    if config.replays is not None:
        return config.replays
    engine = getattr(config.authority, "engine", None)
    if isinstance(engine, sa.Engine):
        # with the CA's group commit, the nonces of concurrent requests share its commits
        return httpsig.SqlReplayStore(engine,
                                      committer=getattr(config.authority, "committer", None))
    return httpsig.MemoryReplayStore()


class ServiceState:
    """The objects one worker process builds from the configuration, created lazily."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.authority = config.authority
        self.primary = PublishedCA(config.authority, config, config.generation)
        self.cas: dict[str, PublishedCA] = {self.primary.name: self.primary}
        for other in config.other_authorities:
            self.cas.setdefault(other.name, PublishedCA(other, config))
        self._lock = threading.Lock()
        self._tsa: TimeStampAuthority | None = None
        self._tsa_renew_at = datetime.max.replace(tzinfo=UTC)
        self.signatures = httpsig.RequestVerifier(_replay_store(config))
        #: what a caller's certificate was found to be, by SHA-256 of its DER: issued by this
        #: CA (its signature checked once) and the principal it maps to (the access file is
        #: read once per process). Validity is checked on every request, revocation whenever
        #: the CA's revocation generation moves.
        self.callers = CallerCache()
        # an issuance records its signed request's nonce in the transaction that stores the
        # certificate (one commit, not two) when the replay memory is in the CA's database
        engine = getattr(self.authority, "engine", None)
        self.claim_with_issuance = (
            isinstance(engine, sa.Engine) and self.signatures.claims_in(engine)
            and bool(getattr(self.authority, "accepts_claim", False)))

    @property
    def tsa(self) -> TimeStampAuthority | None:
        if self.config.tsa_serial_file is None:
            return None
        if self._tsa is None or datetime.now(UTC) >= self._tsa_renew_at:
            with self._lock:
                if self._tsa is None or datetime.now(UTC) >= self._tsa_renew_at:
                    signer = self.authority.tsa_signer()
                    kwargs: dict[str, Any] = {}
                    if self.config.tsa_policy:
                        kwargs["policy"] = self.config.tsa_policy
                    self._tsa = TimeStampAuthority(
                        signer.key, signer.certificate,
                        FileSerialCounter(self.config.tsa_serial_file),
                        chain=tuple(signer.chain), **kwargs,
                    )
                    self._tsa_renew_at = renewal_time(signer.certificate, timedelta(0))
        return self._tsa

    def epochs(self) -> tuple[int, ...] | None:
        """The epochs of the OCSP caches made so far (None before the first): an answer
        stored under one tuple is stale as soon as any of them moves or a cache appears."""
        epochs = tuple(ca.cache.begin() if ca.cache is not None else -1
                       for ca in self.cas.values())
        return None if all(e == -1 for e in epochs) else epochs

    def _pick(self, parsed: ParsedRequest | None) -> PublishedCA:
        """The CA that issued the first certificate the request names that we know."""
        if parsed is None:
            return self.primary  # it answers malformedRequest
        for cert_id in parsed.cert_ids:
            for ca in self.cas.values():
                if ca.responder.is_ours(cert_id):
                    return ca
        return self.primary  # it answers unauthorized

    def ocsp_answer(self, request_der: bytes) -> tuple[bytes, datetime | None]:
        """The DER answer and its nextUpdate (None: not cacheable). The request is parsed once,
        also when two CAs are published and the one to answer must be picked first."""
        parsed: ParsedRequest | None = None
        try:
            if len(self.cas) == 1:
                responder = self.primary.responder
            else:
                with contextlib.suppress(OcspError):
                    parsed = parse_request(request_der)
                responder = self._pick(parsed).responder
        except Exception:
            log.exception("OCSP responder unavailable")
            return error_response("internal_error"), None
        return responder.respond_with_expiry(request_der, parsed=parsed)

    def invalidate(self, serial: int) -> None:
        """A revocation made by this worker: drop the caches now (others follow the DB)."""
        for ca in self.cas.values():
            if ca.cache is not None:
                ca.cache.invalidate(serial)


def _state() -> ServiceState:
    state: ServiceState = current_app.extensions["sscard_ca"]
    return state


# -- public protocol endpoints ------------------------------------------------------------

protocols = Blueprint("protocols", __name__)


def decode_get_path(encoded: str) -> bytes | None:
    """The DER request from an RFC 5019 GET path (URL-encoded base64), or None if invalid."""
    text = urllib.parse.unquote(encoded)
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


@protocols.post("/tsa")
def tsa_post() -> Response:
    state = _state()
    if state.config.tsa_serial_file is None:
        raise ApiError(404, "not_found", "this service runs no time-stamp authority")
    try:
        tsa = state.tsa
    except Exception:
        # the TSA key or certificate cannot be loaded: an RFC 3161 answer, not an HTTP 500
        log.exception("time-stamp authority unavailable")
        tsa = None
    if tsa is None:
        der = rejection("system_failure", "the time-stamp authority is unavailable")
    elif (request.content_length or 0) > MAX_PROTOCOL_BODY:
        der = rejection("bad_request", f"request larger than {MAX_PROTOCOL_BODY} octets")
    else:
        der = tsa.respond(request.get_data(cache=False))
    return Response(der, status=200, mimetype=TSA_REPLY)


def _download(der: bytes, kind: str, pem: bool, filename: str) -> Response:
    if pem:
        body, mimetype = der_to_pem(der, kind), "application/x-pem-file"
    else:
        body = der
        mimetype = "application/pkix-crl" if kind == "X509 CRL" else "application/pkix-cert"
    response = Response(body, status=200, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _published(name: str) -> PublishedCA:
    try:
        return _state().cas[name]
    except KeyError:
        raise ApiError(404, "not_found", f"no CA named {name!r} here") from None


@protocols.get("/crl/<name>.<ext>")
def crl_download(name: str, ext: str) -> Response:
    delta = name.endswith("-delta")
    ca_name = name[: -len("-delta")] if delta else name
    if ext not in ("crl", "der", "pem"):
        raise ApiError(404, "not_found", f"no CRL format {ext!r} (use .crl or .pem)")
    der = _published(ca_name).crl_der(delta)
    response = _download(der, "X509 CRL", ext == "pem", f"{name}.{ext}")
    response.headers["Cache-Control"] = "no-cache"
    return response


@protocols.get("/certs/<name>.<ext>")
def certificate_download(name: str, ext: str) -> Response:
    state = _state()
    if ext not in ("crt", "cer", "der", "pem"):
        raise ApiError(404, "not_found", f"no certificate format {ext!r} (use .crt or .pem)")
    pem = ext == "pem"
    if name == "chain":
        if not pem:
            raise ApiError(404, "not_found", "the chain is offered as chain.pem only")
        body = b"".join(der_to_pem(c.dump(), "CERTIFICATE") for c in state.authority.chain())
        return Response(body, status=200, mimetype="application/x-pem-file")
    cert: asn1x509.Certificate | None
    if name == "ocsp":
        cert = state.authority.ocsp_signer().certificate
    elif name == "tsa":
        cert = state.authority.tsa_signer().certificate
    elif name in state.cas:
        cert = state.cas[name].authority.certificate
    elif name == "root":
        chain = state.authority.chain()
        cert = chain[-1] if len(chain) > 1 else None
    else:
        cert = None
    if cert is None:
        raise ApiError(404, "not_found", f"no certificate named {name!r} here")
    return _download(cert.dump(), "CERTIFICATE", pem, f"{name}.{ext}")


# -- authentication -----------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    method: str  # "token" or "signature"
    principal: Principal | None
    #: why an authenticated caller has no principal (told in every 403)
    unmapped: str = ""


@dataclass
class ApiCall:
    """One request to the authenticated API as its handlers see it, whether Flask or
    ``ApiFront`` read it from the server: the handlers are written once, against this."""

    state: ServiceState
    method: str
    path: str
    query: str
    headers: httpsig.Headers
    remote_addr: str | None
    content_length: int | None
    #: the body, read when first asked for (a request refused before needs none)
    read_body: Callable[[], bytes]
    #: POST /certificates: a signed request's nonce is recorded with the certificate
    issuing: bool = False
    caller: Caller | None = None
    #: the signed request whose nonce the issuance records (``issuing`` only)
    unclaimed: httpsig.SignedRequest | None = None

    @property
    def who(self) -> Caller:
        assert self.caller is not None, "authenticate() runs before every handler"
        return self.caller


def _refuse(call: ApiCall, status: int, why: str, code: str | None = None,
            permission: str | None = None) -> ApiError:
    """Record a refused caller (log and, when configured, the audit log) and make the error."""
    audit.warning("refused %s %s from %s: %s", call.method, call.path, call.remote_addr, why)
    audit_log = call.state.config.audit_log
    if audit_log is not None:
        details: dict[str, Any] = {"reason": why[:500], "http_status": status}
        if permission is not None:
            details["permission"] = permission[:200]
        try:
            audit_log.append(call.caller.name if call.caller is not None else
                             (call.remote_addr or "unknown"), AuditAction.CA_API_REFUSED,
                             f"{call.method} {call.path}"[:512], "denied",
                             details=details)
        except AuditError as exc:
            # the refusal stands either way; losing its record is itself worth an alarm
            log.error("audit record of a refusal not written: %s", exc)
    return ApiError(status, code or ("unauthenticated" if status == 401 else "forbidden"), why,
                    permission)


@contextlib.contextmanager
def _audit_refusal() -> Iterator[None]:
    """The CA records its own operations (no record, no operation); here its refusal to act
    without a record becomes HTTP 503."""
    try:
        yield
    except AuditUnavailable as exc:
        raise ApiError(503, "audit_unavailable",
                       f"the audit log cannot record this operation: {exc}") from None


def _token_caller(call: ApiCall, header: str) -> Caller:
    principal = call.state.config.access.by_token(header[len("Bearer "):].strip())
    if principal is None:
        raise _refuse(call, 401, "unknown API token")
    return Caller(principal.name, "token", principal)


def _signature_caller(call: ApiCall) -> Caller:
    """A request signed by the scheme of ``sscard.httpsig`` (see docs/ca-admin-guide.md),
    with a certificate this CA issued, valid now, not revoked, under an authorised policy.
    Each is accepted once: an issuance records it in the replay memory with the certificate
    (``issue``), every other request here."""
    state = call.state
    defer = state.claim_with_issuance and call.issuing
    try:
        signed = state.signatures.verify(
            call.headers, call.method, call.path, call.query, call.read_body(),
            check=lambda s: _acceptable_caller(call, s), defer_replay=defer)
    except httpsig.SignatureError as exc:
        raise _refuse(call, 401, exc.message, exc.code) from None
    if defer:
        call.unclaimed = signed
    caller = state.callers.caller(signed.certificate_der)
    assert caller is not None  # remembered by _acceptable_caller
    return caller


def _acceptable_caller(call: ApiCall, signed: httpsig.SignedRequest) -> None:
    state = call.state
    cert = signed.certificate
    authority = state.authority
    if state.callers.caller(signed.certificate_der) is None:  # not yet checked: check it now
        try:
            verify_certificate_signature(cert, authority.certificate)
        except (CryptoError, ValueError):
            raise _refuse(call, 401,
                          "the caller's certificate was not issued by this CA") from None
        state.callers.remember(signed.certificate_der, _certificate_caller(state, cert))
    if not signed.certificate_valid_at(datetime.now(UTC)):
        raise _refuse(call, 401, f"the caller's certificate ({cert.subject.human_friendly}) "
                      "is not valid now")
    # Revocation: read again whenever the CA's revocation generation has moved (the counter
    # every revocation bumps, polled at most every revocation_check_interval, as the OCSP
    # answers of this worker are); else the status read for this certificate at that
    # generation stands. The generation is read first, so a revocation after it moves it.
    source = state.primary.generation
    generation = source() if source is not None else None
    if generation is not None and state.callers.good_at(signed.certificate_der) == generation:
        return
    status = authority.status(cert.serial_number)
    if status.status is not Status.GOOD:
        raise _refuse(call, 401, f"the caller's certificate ({cert.subject.human_friendly}) "
                      f"is {status.status.value}")
    if generation is not None:
        state.callers.mark_good(signed.certificate_der, generation)


class CallerCache:
    """Callers by SHA-256 of their certificate's DER, once the certificate's signature by this
    CA has verified, and the revocation generation at which each was last read as good;
    bounded (emptied when full: a cache, not a record)."""

    def __init__(self, size: int = 10_000) -> None:
        self._callers: dict[bytes, Caller] = {}
        self._good: dict[bytes, int] = {}
        self._size = size

    def caller(self, der: bytes) -> Caller | None:
        return self._callers.get(hashlib.sha256(der).digest())

    def remember(self, der: bytes, caller: Caller) -> None:
        if len(self._callers) >= self._size:
            self._callers.clear()
        self._callers[hashlib.sha256(der).digest()] = caller

    def good_at(self, der: bytes) -> int | None:
        """The revocation generation at which the certificate was last read as good."""
        return self._good.get(hashlib.sha256(der).digest())

    def mark_good(self, der: bytes, generation: int) -> None:
        if len(self._good) >= self._size:
            self._good.clear()
        self._good[hashlib.sha256(der).digest()] = generation


def _certificate_caller(state: ServiceState, cert: asn1x509.Certificate) -> Caller:
    """The principal an authenticated certificate maps to: by its fingerprint, and only if it
    still carries the marks of the profile the principal names (never by CN). Without one the
    caller may do nothing; ``_authorize`` refuses each operation, naming the permission."""
    subject = cert.subject.human_friendly
    if is_officer_certificate(cert):
        return Caller(subject, "signature", None, f"{subject} is an officer certificate: "
                      "officers act only through the RA, never at the CA API")
    principal = state.config.access.by_certificate(cert.dump())
    if principal is None or principal.certificate is None:
        return Caller(subject, "signature", None,
                      f"no principal is configured for the certificate of {subject}")
    try:
        profile = state.authority.profile(principal.certificate.profile)
    except ProfileError as exc:
        return Caller(subject, "signature", None, f"principal {principal.name}: {exc}")
    if not certificate_fits_profile(cert, profile):
        return Caller(subject, "signature", None,
                      f"the certificate of {subject} is not of profile {profile.name}, which "
                      f"principal {principal.name} requires")
    return Caller(principal.name, "signature", principal)


def _authorize(call: ApiCall, operation: ApiOperation, profile: str | None = None) -> None:
    """``decide`` for the call's caller; a denial is a recorded 403 naming the permission."""
    authority = call.state.authority
    known: Profile | str | None = profile
    if profile is not None:
        with contextlib.suppress(ProfileError):
            known = authority.profile(profile)
    caller = call.who
    decision = decide(caller.principal, operation, authority.name, known)
    if not decision.allowed:
        reason = caller.unmapped or decision.reason
        raise _refuse(call, 403, f"missing permission '{decision.permission}': {reason}",
                      permission=decision.permission)


def authenticate(call: ApiCall) -> Caller:
    header = call.headers.get("Authorization") or ""
    if header.startswith("Bearer "):
        return _token_caller(call, header)
    if httpsig.RequestVerifier.present(call.headers):
        return _signature_caller(call)
    raise _refuse(call, 401, "authentication required: an API token or a signed request")


def admit(call: ApiCall) -> None:
    """What every API request passes first: the body's size, then who the caller is."""
    if (call.content_length or 0) > MAX_API_BODY:
        raise ApiError(413, "too_large", f"request body larger than {MAX_API_BODY} octets")
    call.caller = authenticate(call)


# -- the authenticated API ----------------------------------------------------------------

api = Blueprint("api", __name__, url_prefix="/api/v1")


@api.before_request
def _require_caller() -> None:
    call = ApiCall(_state(), request.method, request.path,
                   request.query_string.decode("latin-1"), request.headers,
                   request.remote_addr, request.content_length, request.get_data,
                   issuing=request.endpoint == "api.issue")
    g.call = call
    admit(call)


def _json_body(call: ApiCall) -> dict[str, Any]:
    try:
        # depth-limited: a 5,000-deep body is refused, not a RecursionError (500)
        data = parse_json(call.read_body() or b"null")
    except JsonBodyError as exc:
        raise ApiError(400, "bad_json", f"request body is not acceptable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "request body must be a JSON object")
    return data


def _status_json(status: CertificateStatus) -> dict[str, Any]:
    return {
        "serial": serial_to_hex(status.serial),
        "status": status.status.value,
        "revocation_time": status.revocation_time.isoformat() if status.revocation_time else None,
        "reason": status.reason.name if status.reason else None,
        "invalidity_date": status.invalidity_date.isoformat() if status.invalidity_date else None,
    }


def _serial(text: str) -> int:
    try:
        return serial_from_hex(text)
    except ValueError as exc:
        raise ApiError(400, "bad_serial", str(exc)) from None


#: an API handler: the answer's JSON body and HTTP status for an admitted call
Handler = Callable[[ApiCall], tuple[dict[str, Any], int]]


@api.post("/certificates")
def issue() -> tuple[Response, int]:
    body, status = issue_certificate(g.call)
    return _json(body), status


def issue_certificate(call: ApiCall) -> tuple[dict[str, Any], int]:
    """From a CSR (``csr``, PEM), or for a key whose possession the caller vouches for, as the
    RA does for the KMC-made encryption key (``public_key``, base64 SubjectPublicKeyInfo DER,
    and ``subject``, a distinguished name string). An optional ``request_id`` (the caller's
    own id) makes the call idempotent: asked again, the CA answers with the same certificate."""
    signed, call.unclaimed = call.unclaimed, None
    if signed is None:
        return _issue(call, None)
    state = call.state
    try:
        return _issue(call, lambda conn: state.signatures.claim_in(conn, signed))
    except BaseException:
        # not issued (the claim, if made, was rolled back with it): the request still counts
        # as used, and a replay of it is told so rather than given the first answer again
        try:
            state.signatures.claim(signed)
        except httpsig.SignatureError as exc:
            raise _refuse(call, 401, exc.message, exc.code) from None
        raise


def _issue(call: ApiCall,
           claim: Callable[[sa.Connection], None] | None) -> tuple[dict[str, Any], int]:
    data = _json_body(call)
    profile, request_id = data.get("profile"), data.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise ApiError(400, "bad_request", "'request_id' must be a string")
    csr_text, key_text, subject = data.get("csr"), data.get("public_key"), data.get("subject")
    by_key = isinstance(key_text, str) and isinstance(subject, str)
    if not isinstance(profile, str) or (not isinstance(csr_text, str)) == (not by_key):
        raise ApiError(400, "bad_request", "give 'profile' and either 'csr' (PEM) or "
                       "'public_key' (base64 DER) and 'subject', as strings")
    _authorize(call, ApiOperation.ISSUE, profile)
    authority = call.state.authority
    try:
        if by_key:
            assert isinstance(key_text, str) and isinstance(subject, str)
            key = PublicKey.from_spki(base64.b64decode(key_text, validate=True))
        else:
            assert isinstance(csr_text, str)
            # the common request in one pass; any other, and every malformed one, strictly
            octets = csr_text.encode("utf-8")
            csr = read_csr(octets) or load_csr(octets)
    except binascii.Error as exc:
        raise ApiError(400, "bad_public_key", f"public_key is not base64: {exc}") from None
    except CryptoError as exc:
        raise ApiError(400, "bad_public_key", str(exc)) from None
    except X509Error as exc:
        raise ApiError(400, "bad_csr", str(exc)) from None
    # the authority records the issuance, or its refusal as 'denied', under the caller's name
    # with a claim, the request's nonce goes in the certificate's transaction
    caller = call.who.name
    how: dict[str, Any] = {"actor": caller}
    if claim is not None:
        how["claim"] = claim
    try:
        with _audit_refusal():
            issued = (authority.issue_for_public_key(key, subject, profile,
                                                     request_id=request_id, **how)
                      if by_key else authority.issue_from_csr(csr, profile,
                                                              request_id=request_id, **how))
    except (RequestRefused, CryptoError, X509Error, ValueError) as exc:
        raise ApiError(422, "refused", str(exc)) from None
    log.info("issued %s (profile %s) for %s", issued.serial_hex, profile, caller)
    return {
        "serial": issued.serial_hex,
        "profile": issued.profile,
        "certificate": der_to_pem(issued.der, "CERTIFICATE").decode("ascii"),
    }, 201


@api.post("/certificates/batch")
def issue_batch() -> Response:
    body, status = issue_certificates(g.call)
    return _json(body, status)


def issue_certificates(call: ApiCall) -> tuple[dict[str, Any], int]:
    """Many issuances in one signed request, as the RA sends a card batch's: ``profile`` and
    ``requests``, a list of at most MAX_BATCH_ITEMS entries, each a ``csr`` (PEM) or a
    ``public_key`` and ``subject``, with an optional ``request_id`` (idempotent per entry) and,
    from a caller allowed to ``attest-pop``, ``attested_key_sha256``: the hex SHA-256 of the
    CSR's SubjectPublicKeyInfo whose proof of possession the caller verified (raVerified).
    Authorised once; each entry is checked, audited and answered on its own (``results``, in
    order: the certificate, or the refusal), all stored in one transaction and one commit."""
    data = _json_body(call)
    profile, entries = data.get("profile"), data.get("requests")
    if not isinstance(profile, str) or not isinstance(entries, list) or not entries or \
            not all(isinstance(e, dict) for e in entries):
        raise ApiError(400, "bad_request", "give 'profile' (a string) and 'requests' (a "
                       "non-empty list of objects)")
    if len(entries) > MAX_BATCH_ITEMS:
        raise ApiError(413, "too_large", f"{len(entries)} requests in one batch (at most "
                       f"{MAX_BATCH_ITEMS})")
    _authorize(call, ApiOperation.ISSUE, profile)
    caller = call.who
    if any("attested_key_sha256" in e for e in entries):
        if caller.method != "signature":
            raise _refuse(call, 403, "proof of possession is attested only in a signed request",
                          permission=f"{ApiOperation.ATTEST_POP.value} profile={profile}")
        _authorize(call, ApiOperation.ATTEST_POP, profile)
    # every entry goes to the authority, an unreadable one too: it records and refuses it
    outcomes = _issue_entries(call, [_batch_entry(e) for e in entries], profile)
    results = [_outcome_json(o) for o in outcomes]
    issued = sum(1 for r in results if "serial" in r)
    log.info("issued %d of %d (profile %s) for %s", issued, len(results), profile,
             caller.name)
    return {"results": results}, 200


def _issue_entries(call: ApiCall, wanted: list[IssueRequest],
                   profile: str) -> list[ItemOutcome]:
    try:
        with _audit_refusal():
            return call.state.authority.issue_each(wanted, profile, actor=call.who.name)
    except (RequestRefused, ProfileError) as exc:
        raise ApiError(422, "refused", str(exc)) from None


def _batch_entry(entry: Mapping[str, Any]) -> IssueRequest:
    """One entry of a batch; one that cannot be read is refused for itself alone."""
    unknown = sorted(set(entry) - {"csr", "public_key", "subject", "request_id",
                                   "attested_key_sha256"})
    if unknown:
        return IssueRequest(unreadable=f"unknown field(s) {', '.join(unknown)[:200]}")
    csr_text, key_text, subject = entry.get("csr"), entry.get("public_key"), entry.get("subject")
    request_id, attested = entry.get("request_id"), entry.get("attested_key_sha256")
    if request_id is not None and not isinstance(request_id, str):
        return IssueRequest(unreadable="'request_id' must be a string")
    try:
        if isinstance(csr_text, str) and key_text is None and subject is None:
            digest = None
            if attested is not None:
                if not isinstance(attested, str) or len(attested) != 64:
                    raise ValueError("'attested_key_sha256' must be 64 hex digits")
                digest = bytes.fromhex(attested)
            # parsed by the authority, which refuses (and records) a malformed CSR
            return IssueRequest(csr=csr_text.encode("utf-8"), request_id=request_id,
                                attested_key=digest)
        if isinstance(key_text, str) and isinstance(subject, str) and csr_text is None \
                and attested is None:
            return IssueRequest(public_key=PublicKey.from_spki(
                base64.b64decode(key_text, validate=True)), subject=subject,
                request_id=request_id)
    except (binascii.Error, ValueError, CryptoError) as exc:
        return IssueRequest(unreadable=str(exc)[:500], request_id=request_id)
    return IssueRequest(unreadable="give either 'csr' (PEM, optionally "
                        "'attested_key_sha256') or 'public_key' (base64 DER) and 'subject', "
                        "as strings", request_id=request_id)


def _outcome_json(outcome: ItemOutcome) -> dict[str, Any]:
    if outcome.issued is None:
        return {"error": {"code": "refused", "detail": outcome.refused}}
    body: dict[str, Any] = {
        "serial": outcome.issued.serial_hex,
        "profile": outcome.issued.profile,
        "certificate": der_to_pem(outcome.issued.der, "CERTIFICATE").decode("ascii"),
    }
    if outcome.repeated:
        body["repeated"] = True
    return body


@api.post("/certificates/<serial>/revoke")
def revoke(serial: str) -> Response:
    call: ApiCall = g.call
    number = _serial(serial)
    data = _json_body(call)
    reason = data.get("reason", "unspecified")
    invalidity: datetime | None = None
    try:
        reason_value = RevocationReason.parse(reason)
        if data.get("invalidity_date") is not None:
            invalidity = datetime.fromisoformat(str(data["invalidity_date"]))
            if invalidity.tzinfo is None:
                raise ValueError("invalidity_date must carry a time zone")
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    _authorize(call, ApiOperation.REVOKE)
    authority = call.state.authority
    profile = authority.certificate_profile(number)
    if profile is not None:  # an unknown serial answers 404 below
        _authorize(call, ApiOperation.REVOKE, profile)
    # the authority records the revocation, or its refusal as 'denied'
    try:
        with _audit_refusal():
            status = authority.revoke(number, reason_value, invalidity, actor=call.who.name)
    except UnknownCertificate as exc:
        raise ApiError(404, "unknown_certificate", str(exc)) from None
    except AlreadyRevoked as exc:
        raise ApiError(409, "already_revoked", str(exc)) from None
    except RequestRefused as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    call.state.invalidate(number)
    log.info("revoked %s (%s) for %s", serial_to_hex(number), reason_value.name, call.who.name)
    return _json(_status_json(status))


@api.get("/certificates/<serial>")
def status(serial: str) -> Response:
    call: ApiCall = g.call
    _authorize(call, ApiOperation.STATUS)
    return _json(_status_json(call.state.authority.status(_serial(serial))))


def _json_octets(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _json(body: Mapping[str, Any], status: int = 200) -> Response:
    return Response(_json_octets(body), status=status, mimetype=JSON)


# -- errors -------------------------------------------------------------------------------


def _api_problem(exc: ApiError) -> problem.Problem:
    """A 403 names the permission the caller lacks, as an RFC 9457 extension member."""
    return problem.Problem(exc.status, exc.code, str(exc),
                           extensions=(("permission", exc.permission),)
                           if exc.permission is not None else ())


#: the one place the CA's web layer turns an error into an HTTP answer (RFC 9457)
PROBLEMS = problem.ProblemTable({
    ApiError: lambda exc: _api_problem(exc),  # type: ignore[arg-type]
    UnknownCertificate: (404, "unknown_certificate"),
    AlreadyRevoked: (409, "already_revoked"),
    RequestRefused: (422, "refused"),
    AuditUnavailable: (503, "audit_unavailable"),
    httpsig.ReplayStoreUnavailable: (503, "replay_memory_unavailable"),
    CAError: (500, "ca_error"),
})


# -- OCSP without Flask -------------------------------------------------------------------


@dataclass(frozen=True)
class _CachedGet:
    body: bytes
    headers: list[tuple[str, str]]  # without Cache-Control (its max-age is worked out per hit)
    epochs: tuple[int, ...]
    refresh_at: datetime
    next_update: datetime


_POST_HEADERS = [("Content-Type", OCSP_RESPONSE), ("Cache-Control", "no-cache, no-store")]


class OcspFront:
    """WSGI middleware answering OCSP itself: ``POST /ocsp`` and ``GET /ocsp/<base64>``.

    These are the hot paths of a responder (every relying party, every signature check), and
    a full Flask request cycle cost more than the answer; their HTTP is small enough to write
    here. Repeated RFC 5019 GETs are answered from memory, keyed by the path, until the OCSP
    cache's epoch moves (a revocation) or the answer is due for refreshing. Bad requests get
    an OCSP error response with HTTP 200, never a 4xx/5xx. Everything else goes to Flask.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], state: ServiceState,
                 max_entries: int = 50_000) -> None:
        self.app = app
        self.state = state
        self.max_entries = max_entries
        self.entries: dict[str, _CachedGet] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO", "")
        if method in ("GET", "HEAD") and path.startswith("/ocsp/"):
            httpops.mark_route(environ, "/ocsp/<path:encoded>")
            body = self._get(path, start_response)
            return [] if method == "HEAD" else body
        if method == "POST" and path in ("/ocsp", "/ocsp/"):
            httpops.mark_route(environ, "/ocsp")
            der = self._answer(_read_body(environ))[0]
            start_response("200 OK", [*_POST_HEADERS, ("Content-Length", str(len(der)))])
            return [der]
        return self.app(environ, start_response)

    def _answer(self, request_der: bytes | None) -> tuple[bytes, datetime | None]:
        if request_der is None:
            return error_response("malformed_request"), None
        try:
            return self.state.ocsp_answer(request_der)
        except Exception:  # never an HTTP 500 for OCSP
            log.exception("OCSP answer failed")
            return error_response("internal_error"), None

    def _get(self, path: str, start_response: Callable[..., Any]) -> list[bytes]:
        epochs = self.state.epochs()
        now = datetime.now(UTC)
        entry = self.entries.get(path)
        if entry is not None and entry.epochs == epochs and now < entry.refresh_at:
            CACHE_HIT.inc()
            start_response("200 OK", [*entry.headers, _cache_control(entry.next_update, now)])
            return [entry.body]
        encoded = path[len("/ocsp/"):]
        request_der = decode_get_path(encoded) if len(encoded) <= MAX_PROTOCOL_BODY else None
        der, next_update = self._answer(request_der)
        headers = [("Content-Type", OCSP_RESPONSE), ("Content-Length", str(len(der)))]
        if next_update is None:
            start_response("200 OK", [*headers, ("Cache-Control", "no-cache, no-store")])
            return [der]
        # RFC 5019 §6: let HTTP caches and proxies keep the answer until it goes stale
        headers += [("Expires", format_datetime(next_update, usegmt=True)),
                    ("Last-Modified", format_datetime(now, usegmt=True)),
                    ("ETag", '"' + hashlib.sha1(der).hexdigest() + '"')]  # noqa: S324
        if epochs is not None:  # stored under the epochs seen before answering
            fresh_for = self.state.config.ocsp_validity * REFRESH_FRACTION
            if len(self.entries) >= self.max_entries:
                self.entries.clear()
            self.entries[path] = _CachedGet(der, headers, epochs,
                                            min(now + fresh_for, next_update), next_update)
        start_response("200 OK", [*headers, _cache_control(next_update, now)])
        return [der]


# -- issuance without Flask ---------------------------------------------------------------


#: the paths ``ApiFront`` answers (POST), each also its Flask rule (the metrics' route label)
_FRONT_ROUTES: dict[str, Handler] = {
    "/api/v1/certificates": issue_certificate,
    "/api/v1/certificates/batch": issue_certificates,
}


class ApiFront:
    """WSGI middleware answering issuance itself: ``POST /api/v1/certificates`` and
    ``POST /api/v1/certificates/batch``.

    Issuance is the API's hot path, and a Flask request cycle cost a sixth of it. The front
    runs the very handlers the Flask routes run (``admit``: the body limit and the caller;
    ``issue_certificate``, ``issue_certificates``: JSON limits, authorisation, audit), turns
    errors into the same RFC 9457 documents through ``PROBLEMS`` and answers with the same
    bodies and headers; only the reading of the request and the writing of the answer are
    its own. A request it does not read plainly (no Content-Length, or not a number: a
    chunked body) goes to Flask, which judges it as before, as does every other route.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], state: ServiceState) -> None:
        self.app = app
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        handler = _FRONT_ROUTES.get(path) if environ.get("REQUEST_METHOD") == "POST" else None
        length = environ.get("CONTENT_LENGTH") or ""
        if handler is None or not (length.isascii() and length.isdigit()):
            return self.app(environ, start_response)
        httpops.mark_route(environ, path)
        size = int(length)
        call = ApiCall(self.state, "POST", path, environ.get("QUERY_STRING", ""),
                       EnvironHeaders(environ), environ.get("REMOTE_ADDR"), size,
                       _body_reader(environ["wsgi.input"], size),
                       issuing=handler is issue_certificate)
        headers: list[tuple[str, str]]
        try:
            admit(call)
            answer, status = handler(call)
            body, headers = _json_octets(answer), []
            content_type = JSON
        except Exception as exc:  # as Flask's error handler: every error is a problem document
            found = PROBLEMS.answer(exc)
            status, body, headers = found.status, problem.encode(found), [*problem.HEADERS]
            content_type = problem.PROBLEM_JSON
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}",
                       [("Content-Type", content_type), ("Content-Length", str(len(body))),
                        *headers])
        return [body]


def _body_reader(stream: Any, size: int) -> Callable[[], bytes]:
    """The body of ``size`` octets, read from the server on the first call (a request refused
    before needs none) and kept for the next. A body that ends early (the client went away)
    is refused, never judged in part, as werkzeug refuses it to Flask."""
    read: list[bytes] = []

    def body() -> bytes:
        if not read:
            data = stream.read(size) if size else b""
            if len(data) != size:
                raise ApiError(400, "bad_request", f"the body ended after {len(data)} of the "
                               f"{size} octets its Content-Length announced")
            read.append(data)
        return read[0]

    return body


def _cache_control(next_update: datetime, now: datetime) -> tuple[str, str]:
    max_age = max(0, int((next_update - now).total_seconds()))
    return ("Cache-Control", f"max-age={max_age}, public, no-transform, must-revalidate")


def _read_body(environ: dict[str, Any]) -> bytes | None:
    """The POSTed request, or None when it is larger than ``MAX_PROTOCOL_BODY`` (unread)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length < 0 or length > MAX_PROTOCOL_BODY:
        return None
    stream = environ["wsgi.input"]
    if length:
        body: bytes = stream.read(length)
    elif environ.get("wsgi.input_terminated"):  # chunked: the server ends the stream
        body = stream.read(MAX_PROTOCOL_BODY + 1)
    else:
        body = b""
    return body if len(body) <= MAX_PROTOCOL_BODY else None


def create_app(config: ServiceConfig) -> Flask:
    """The Flask application for one CA (one per worker process), issuance answered by
    ``ApiFront`` and OCSP by ``OcspFront`` before Flask."""
    app = Flask("ca.service")
    app.config["MAX_CONTENT_LENGTH"] = max(MAX_PROTOCOL_BODY, MAX_API_BODY)
    app.register_blueprint(protocols)
    app.register_blueprint(api)
    PROBLEMS.install(app)
    return _with_ocsp_front(app, config, "ca", issuance=True)


def create_ocsp_app(config: ServiceConfig) -> Flask:
    """The OCSP responder alone (``sscard ca ocsp-serve``): ``POST /ocsp`` and
    ``GET /ocsp/<base64>`` through the same ``OcspFront``, and the operators' ``/health``,
    ``/ready`` and ``/metrics``; nothing else (the API, CRLs and the TSA stay with
    ``sscard ca serve``), so every other path is a 404."""
    app = Flask("ca.ocsp")
    app.config["MAX_CONTENT_LENGTH"] = MAX_PROTOCOL_BODY
    return _with_ocsp_front(app, config, "ca-ocsp")


def _with_ocsp_front(app: Flask, config: ServiceConfig, service: str,
                     issuance: bool = False) -> Flask:
    state = ServiceState(config)
    app.extensions["sscard_ca"] = state
    if issuance:
        app.wsgi_app = ApiFront(app.wsgi_app, state)  # type: ignore[method-assign]
    app.wsgi_app = OcspFront(app.wsgi_app, state)  # type: ignore[method-assign]
    engine = getattr(config.authority, "engine", None)  # the CA's database, when it has one
    httpops.install(app, service, {"database": httpops.database_check(engine)} if engine else {})
    return app
