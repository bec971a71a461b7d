"""Signed HTTP requests: how a business system or a service proves who it is without mutual TLS.

The one request-signing scheme of every sscard service (gateway, CA API, KMC, RA API). The
caller signs, with its certificate's key, a canonical text of the request::

    SSCARD-REQUEST-V1
    <METHOD>
    <path>
    <query string>
    <X-Sscard-Date, e.g. 2026-11-28T16:50:10Z>
    <X-Sscard-Nonce, 16 to 64 characters>
    <SHA-256 of the body, hex>

and sends the signature (base64; DER for SM2/ECDSA) in ``X-Sscard-Signature`` and its
certificate in ``X-Sscard-Certificate`` (base64 DER, or URL-escaped PEM as nginx's
``$ssl_client_escaped_cert`` writes it). ``RequestSigner`` makes these headers.

``RequestVerifier`` accepts a date within its window and each (certificate, nonce) once. The
replay memory is keyed on the certificate's *content as its issuer signed it* (SHA-256 of the
tbsCertificate) and the nonce: never on header bytes (the same certificate can be sent as PEM
of any line length, with CRLF, or re-encoded) nor on signature bytes (an ECDSA signature
(r, s) is also valid as (r, n-s), so a request or a certificate can be re-signed by anyone
without the key). Certificates that are not DER are refused. The memory lives in the service's
database (``SqlReplayStore``: insert-or-fail on a primary key, expired rows purged), so every
gunicorn worker refuses a request any other worker has already accepted.

Whether the certificate is acceptable (path, purpose, revocation, permissions) is the
service's decision, after ``verify``; this module only proves possession of its key, once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import unquote

import sqlalchemy as sa
from asn1crypto import x509

from sscard.clock import Clock, system_clock
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError
from sscard.groupcommit import GroupCommit, GroupCommitError
from sscard.keys.base import KeyHandle
from sscard.sqlschema import DriverStatement, create_all_concurrently
from sscard.x509.pem import PemError, pem_to_der

DATE = "X-Sscard-Date"
NONCE = "X-Sscard-Nonce"
SIGNATURE = "X-Sscard-Signature"
CERTIFICATE = "X-Sscard-Certificate"
HEADERS = (DATE, NONCE, SIGNATURE, CERTIFICATE)
PREFIX = "SSCARD-REQUEST-V1"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: a certificate header longer than this is refused unread (servers cap headers near 8 KiB)
MAX_CERTIFICATE_HEADER = 16 * 1024
DEFAULT_WINDOW = timedelta(minutes=5)



class Headers(Protocol):
    """What is needed of a request's headers (a dict, werkzeug's or requests' headers)."""

    def get(self, key: str, /) -> str | None: ...


class SignatureError(Exception):
    """A signed request that is not acceptable; ``code`` is stable, the message names why.

    Codes: ``unauthenticated`` (missing, malformed or wrong signature or certificate),
    ``request_expired`` (date outside the window), ``replayed_request`` (already used).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ReplayStoreUnavailable(Exception):
    """The replay memory cannot be read or written (database down): the request is refused
    unanswered, since accepting it could accept a replay. Services answer 503."""


#: the scheme as an OpenAPI security scheme, for every service's description
OPENAPI_SECURITY_SCHEME = {
    "type": "apiKey", "in": "header", "name": SIGNATURE,
    "description": "signature with the caller's certificate key over SSCARD-REQUEST-V1, "
                   "method, path, query, X-Sscard-Date, X-Sscard-Nonce and the body's SHA-256; "
                   "the certificate in X-Sscard-Certificate (sscard.httpsig, "
                   "docs/integration-guide.md); each request is accepted once"}


def canonical(method: str, path: str, query: str, date: str, nonce: str, body: bytes) -> bytes:
    """The text a request signature covers."""
    return "\n".join([PREFIX, method.upper(), path, query, date, nonce,
                      hashlib.sha256(body).hexdigest()]).encode()


class RequestSigner:
    """The client side: headers that authenticate one request each (a fresh nonce every time)."""

    def __init__(self, key: KeyHandle, certificate: x509.Certificate | bytes,
                 clock: Clock = system_clock) -> None:
        # DER once: asn1crypto re-encodes a certificate built in memory on every dump
        der = certificate if isinstance(certificate, bytes) else certificate.dump()
        self.key = key
        self.certificate_b64 = base64.b64encode(der).decode()
        self.clock = clock

    def headers(self, method: str, path: str, query: str = "", body: bytes = b"",
                now: datetime | None = None) -> dict[str, str]:
        date = (now or self.clock()).astimezone(UTC).strftime(DATE_FORMAT)
        nonce = secrets.token_hex(16)
        signature = self.key.sign(canonical(method, path, query, date, nonce, body))
        return {DATE: date, NONCE: nonce, SIGNATURE: base64.b64encode(signature).decode(),
                CERTIFICATE: self.certificate_b64}


def sign_request(key: KeyHandle, certificate: x509.Certificate | bytes, method: str, path: str,
                 query: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
    """One-off ``RequestSigner(key, certificate).headers(...)``."""
    return RequestSigner(key, certificate).headers(method, path, query, body, now)


#: DATE_FORMAT as signers write it (zero-padded), read without strptime, which cost a sixth
#: of a request's signature check; strptime reads any other form (it also takes 1-digit
#: fields), so both accept and refuse alike
_WRITTEN_DATE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def parse_date(text: str) -> datetime:
    written = _WRITTEN_DATE.fullmatch(text)
    if written is not None:
        year, month, day, hour, minute, second = map(int, written.groups())
        # ValueError if it names no instant, as from strptime
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return datetime.strptime(text, DATE_FORMAT).replace(tzinfo=UTC)


# -- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedCertificate:
    certificate: x509.Certificate
    der: bytes
    """The certificate's DER (as received: only DER is accepted)."""
    identity: bytes
    """SHA-256 of the tbsCertificate: the same for every encoding of the certificate and for
    every rewrite of its issuer's signature."""
    public_key: PublicKey


def _certificate_der(text: str) -> bytes:
    if "-----BEGIN" in text or "%2D%2D%2D%2D%2DBEGIN" in text.upper():
        # PEM in a header is URL-escaped (nginx) or has escaped newlines; any line length, CRLF
        pem = unquote(text).replace("\\r", "\r").replace("\\n", "\n")
        try:
            return pem_to_der(pem.encode("ascii"), "CERTIFICATE")
        except (PemError, UnicodeEncodeError) as exc:
            raise SignatureError("unauthenticated",
                                 f"{CERTIFICATE} holds malformed PEM: {exc}") from None
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise SignatureError("unauthenticated",
                             f"{CERTIFICATE} must be base64 DER or URL-escaped PEM") from None


def decode_certificate(data: str | bytes) -> DecodedCertificate:
    """A certificate from a header value (base64 DER or escaped PEM) or raw DER bytes.

    Refuses what is not DER (BER long-form or indefinite lengths, trailing data), naming it.
    """
    if isinstance(data, str):
        if len(data) > MAX_CERTIFICATE_HEADER:
            raise SignatureError(
                "unauthenticated",
                f"{CERTIFICATE} is longer than {MAX_CERTIFICATE_HEADER} characters")
        der = _certificate_der(data.strip())
    else:
        der = bytes(data)
    try:
        cert = x509.Certificate.load(der, strict=True)
        canonical_der = cert.dump(force=True)
        tbs = cert["tbs_certificate"].dump()
        key = PublicKey.from_spki(cert.public_key.dump())
    except (ValueError, TypeError, KeyError, CryptoError) as exc:
        raise SignatureError("unauthenticated",
                             f"the certificate cannot be parsed: {exc}") from None
    if canonical_der != der:
        raise SignatureError(
            "unauthenticated",
            "the certificate is not DER (non-minimal or indefinite lengths, or other BER); "
            "send it exactly as issued")
    return DecodedCertificate(cert, der, hashlib.sha256(tbs).digest(), key)


class _CertificateCache:
    """Decoded certificates by the header text (at most MAX_CERTIFICATE_HEADER characters):
    callers send the same one each time."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[str, DecodedCertificate] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, text: str) -> DecodedCertificate:
        with self._lock:
            hit = self._items.get(text)
            if hit is not None:
                self._items.move_to_end(text)
                return hit
        decoded = decode_certificate(text)
        with self._lock:
            self._items[text] = decoded
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return decoded


# -- replay memory --------------------------------------------------------------------------


class ReplayStore(Protocol):
    def first_use(self, key: bytes, expires_at: datetime) -> bool:
        """Record ``key`` until ``expires_at``; False when it is already recorded."""
        ...


class MemoryReplayStore:
    """One process only: for the embedded deployment and the werkzeug server."""

    def __init__(self, clock: Clock = system_clock) -> None:
        self._seen: dict[bytes, datetime] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def first_use(self, key: bytes, expires_at: datetime) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._seen) > 100_000:
                self._seen = {k: t for k, t in self._seen.items() if t > now}
            known = self._seen.get(key)
            if known is not None and known > now:
                return False
            self._seen[key] = expires_at
            return True


_metadata = sa.MetaData()
request_nonces = sa.Table(
    "sscard_request_nonces", _metadata,
    # SHA-256 over (certificate identity, nonce): unique, so the second insert fails
    sa.Column("replay_key", sa.LargeBinary(32), primary_key=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


_INSERT_NONCE = DriverStatement(request_nonces.insert().values(
    replay_key=sa.bindparam("replay_key"), expires_at=sa.bindparam("expires_at")))


def _engine(url: str) -> sa.Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL: workers insert without blocking readers; NORMAL: no fsync per request (an
        # entry lost to a power cut only reopens a replay window the date check still bounds)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


class SqlReplayStore:
    """The replay memory in the service's database, shared by every worker process."""

    def __init__(self, engine: sa.Engine | str, clock: Clock = system_clock,
                 purge_every: float = 60.0, committer: GroupCommit | None = None) -> None:
        if isinstance(engine, str):
            engine = _engine(engine)
        self.engine = engine
        #: the service's group commit on the same database: each request's nonce is still
        #: written (and committed) before the request is acted on, in a shared transaction
        self.committer = committer
        self._clock = clock
        self._purge_every = purge_every
        self._next_purge = 0.0
        # SQLite refuses a writer at once ("database is locked", no busy wait) when another
        # process holds the lock while this one upgrades from reading: workers booting together
        for attempt in range(100):
            try:
                create_all_concurrently(_metadata, engine)
                break
            except sa.exc.OperationalError:
                if attempt == 99 or not engine.url.get_backend_name() == "sqlite":
                    raise
                time.sleep(0.1)

    def first_use(self, key: bytes, expires_at: datetime) -> bool:
        try:
            if time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + self._purge_every
                self.purge()
            if self.committer is not None:
                self.committer.run(lambda conn: self._insert(conn, key, expires_at))
            else:
                with self.engine.begin() as conn:
                    self._insert(conn, key, expires_at)
        except sa.exc.IntegrityError:
            return False
        except (sa.exc.SQLAlchemyError, GroupCommitError) as exc:
            raise ReplayStoreUnavailable(
                f"the replay memory of signed requests is unavailable ({type(exc).__name__}); "
                "nothing was done, retry later") from exc
        return True

    @staticmethod
    def _insert(conn: sa.Connection, key: bytes, expires_at: datetime) -> None:
        _INSERT_NONCE(conn, {"replay_key": key, "expires_at": expires_at.astimezone(UTC)})

    def purge(self) -> int:
        """Forget entries whose date the window refuses anyway."""
        with self.engine.begin() as conn:
            return conn.execute(request_nonces.delete().where(
                request_nonces.c.expires_at < self._clock())).rowcount or 0


def replay_store(url: str | None, clock: Clock = system_clock) -> ReplayStore:
    """The database's replay memory, or (no database) this process's own."""
    return SqlReplayStore(url, clock) if url else MemoryReplayStore(clock)


# -- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedRequest:
    """A request whose signature verified (and, once ``verify`` returns, seen the first time)."""

    certificate: x509.Certificate
    certificate_der: bytes
    identity: bytes
    nonce: str
    date: datetime
    #: the replay memory's key of this request, and until when it must be kept
    replay_key: bytes = b""
    replay_until: datetime | None = None

    def certificate_valid_at(self, when: datetime) -> bool:
        validity = self.certificate["tbs_certificate"]["validity"]
        return bool(validity["not_before"].native <= when <= validity["not_after"].native)


class RequestVerifier:
    """The server side: checks the headers, the date, the signature, then the replay memory."""

    def __init__(self, replays: ReplayStore, window: timedelta = DEFAULT_WINDOW,
                 clock: Clock = system_clock) -> None:
        self.replays = replays
        self.window = window
        self.clock = clock
        self._certificates = _CertificateCache()

    @staticmethod
    def present(headers: Headers) -> bool:
        """Whether the request carries any of the scheme's headers."""
        return any(headers.get(h) for h in HEADERS)

    def verify(self, headers: Headers, method: str, path: str, query: str, body: bytes,
               check: Callable[[SignedRequest], object] | None = None, *,
               defer_replay: bool = False) -> SignedRequest:
        """The request's signed content, seen for the first time.

        ``check``: the service's decision on the certificate (trusted path, bound caller,
        permissions), run after the signature verifies and before the replay memory is
        written, so that callers it refuses cannot fill the memory; it raises to refuse.
        ``defer_replay``: the caller claims the request itself, before acting on it, with
        ``claim`` or, inside the transaction that acts on it, with ``claim_in``.
        """
        values = {h: headers.get(h) or "" for h in HEADERS}
        missing = [h for h, v in values.items() if not v]
        if missing:
            raise SignatureError("unauthenticated",
                                 f"request signature headers missing: {', '.join(missing)}")
        date, nonce = values[DATE], values[NONCE]
        try:
            when = parse_date(date)
        except ValueError:
            raise SignatureError("unauthenticated",
                                 f"{DATE} must look like 2026-11-28T16:50:10Z (UTC)") from None
        skew = abs((self.clock() - when).total_seconds())
        if skew > self.window.total_seconds():
            raise SignatureError(
                "request_expired",
                f"the request is dated {date}, {skew:.0f} s from the server's clock "
                f"(window {self.window.total_seconds():.0f} s)")
        if not 16 <= len(nonce) <= 64 or not nonce.isascii() or not nonce.isprintable():
            raise SignatureError("unauthenticated",
                                 f"{NONCE} must be 16 to 64 printable ASCII characters")
        try:
            signature = base64.b64decode(values[SIGNATURE], validate=True)
        except (ValueError, binascii.Error):
            raise SignatureError("unauthenticated", f"{SIGNATURE} must be base64") from None
        cert = self._certificates.get(values[CERTIFICATE])
        try:
            cert.public_key.verify(signature, canonical(method, path, query, date, nonce, body))
        except (CryptoError, ValueError):
            raise SignatureError("unauthenticated",
                                 "the request signature does not verify with the certificate "
                                 "sent") from None
        key = hashlib.sha256(cert.identity + nonce.encode("ascii")).digest()
        # kept a whole window longer than the date check needs: a host whose clock runs ahead
        # may purge, and another must not then accept the request again
        signed = SignedRequest(cert.certificate, cert.der, cert.identity, nonce, when, key,
                               when + 2 * self.window)
        if check is not None:
            check(signed)  # the service refuses strangers before they can write anything
        if not defer_replay:
            self.claim(signed)
        return signed

    def claim(self, signed: SignedRequest) -> None:
        """Record the request in the replay memory; ``SignatureError`` (replayed_request)
        when it is there already."""
        assert signed.replay_until is not None
        if not self.replays.first_use(signed.replay_key, signed.replay_until):
            raise _replayed()

    def claims_in(self, engine: sa.Engine) -> bool:
        """Whether ``claim_in`` can run in transactions on ``engine``: the replay memory is a
        table of that same database."""
        store = self.replays
        return isinstance(store, SqlReplayStore) and store.engine.url == engine.url

    def claim_in(self, conn: sa.Connection, signed: SignedRequest) -> None:
        """``claim`` inside the caller's write transaction on the replay memory's database
        (``claims_in``), so that the request is recorded if and only if what it asked for
        commits; ``SignatureError`` (replayed_request) when it is there already, after which
        the caller must roll back (the statement failed: PostgreSQL takes nothing more)."""
        assert signed.replay_until is not None
        try:
            SqlReplayStore._insert(conn, signed.replay_key, signed.replay_until)
        except sa.exc.IntegrityError:
            # the caller's transaction (or its savepoint) is rolled back by this raise
            raise _replayed() from None


def _replayed() -> SignatureError:
    return SignatureError("replayed_request", "this signed request was already used (a replay)")
