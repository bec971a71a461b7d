"""Caching for the OCSP responder: signed answers and looked-up statuses, with revocation refresh.

Two layers, both keyed so that a revocation can never be hidden for longer than one request:

- whole signed responses, keyed by the request's DER (requests without a nonce, as RFC 5019
  clients send them: the same bytes always deserve the same answer until it goes stale);
- statuses per serial, so a nonce request (which needs a fresh signature) still skips the
  database.

Freshness: an entry is served until half of its validity has passed (``refresh_fraction``), so
relying parties never receive an answer close to its nextUpdate. Revocation: ``generation`` is
a callable returning the CA's revocation generation (a counter the database bumps on every
revocation, shared by every process); when it changes, everything cached is dropped. ``invalidate``
does the same in-process, for a revocation hook. Revocations are rare next to status queries, so
dropping everything is simpler and cheaper than tracking which responses mention which serial.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ca.records import CertificateStatus
from sscard.metrics import OCSP_CACHE

#: Answers are served until this fraction of their validity has passed, then worked out again.
REFRESH_FRACTION = 0.5

#: the two counters, looked up once (``labels`` costs a lock and a dict lookup per call)
CACHE_HIT = OCSP_CACHE.labels("hit")
CACHE_MISS = OCSP_CACHE.labels("miss")

#: Returns the CA's current revocation generation; any change means "something was revoked".
Generation = Callable[[], int]


@dataclass(frozen=True)
class _Response:
    der: bytes
    refresh_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class _Status:
    status: CertificateStatus
    read_at: datetime
    refresh_at: datetime


class ResponseCache:
    """Thread-safe, size-bounded cache of OCSP answers for one responder."""

    def __init__(
        self,
        validity: timedelta,
        generation: Generation | None = None,
        *,
        refresh_fraction: float = REFRESH_FRACTION,
        max_entries: int = 100_000,
    ) -> None:
        if not 0 < refresh_fraction <= 1:
            raise ValueError("refresh_fraction must be in (0, 1]")
        self._fresh_for = validity * refresh_fraction
        self._generation = generation
        self._max = max_entries
        self._lock = threading.Lock()
        self._responses: OrderedDict[bytes, _Response] = OrderedDict()
        self._statuses: OrderedDict[int, _Status] = OrderedDict()
        self._seen_generation = generation() if generation is not None else 0
        #: bumped whenever the cache is emptied; the token callers carry through a request
        self._epoch = 0
        self.hits = 0
        self.misses = 0

    @property
    def fresh_for(self) -> timedelta:
        """How long an answer is served before it is worked out again."""
        return self._fresh_for

    # -- revocation -----------------------------------------------------------------------

    def invalidate(self, serial: int | None = None) -> None:
        """Forget everything (a certificate was revoked); ``serial`` is for the log only."""
        with self._lock:
            self._responses.clear()
            self._statuses.clear()
            # answers in flight carry the old epoch and will not be stored
            self._epoch += 1

    def begin(self) -> int:
        """Check the revocation generation (dropping everything if it moved) and return it.

        Callers pass the returned token to ``status`` and ``store_response``: an answer worked
        out under an older generation is not stored, so a revocation that lands while a
        lookup is in flight cannot leave a stale "good" behind.
        """
        if self._generation is None:
            return self._epoch
        current = self._generation()
        with self._lock:
            if current != self._seen_generation:
                self._responses.clear()
                self._statuses.clear()
                self._seen_generation = current
                self._epoch += 1
            return self._epoch

    # -- whole responses ------------------------------------------------------------------

    def response(self, key: bytes, now: datetime) -> tuple[bytes, datetime] | None:
        """A fresh cached signed response for ``key`` (the request DER) and its nextUpdate.

        Call ``begin`` first (once per request).
        """
        with self._lock:
            entry = self._responses.get(key)
            if entry is None or now >= entry.refresh_at:
                self.misses += 1
                CACHE_MISS.inc()
                return None
            self.hits += 1
            CACHE_HIT.inc()
            return entry.der, entry.expires_at

    def store_response(
        self, key: bytes, der: bytes, produced_at: datetime, next_update: datetime, token: int
    ) -> None:
        refresh_at = min(produced_at + self._fresh_for, next_update)
        with self._lock:
            if token != self._epoch:
                return
            self._responses[key] = _Response(der, refresh_at, next_update)
            self._responses.move_to_end(key)
            while len(self._responses) > self._max:
                self._responses.popitem(last=False)

    # -- statuses -------------------------------------------------------------------------

    def status(
        self,
        serial: int,
        now: datetime,
        lookup: Callable[[int], CertificateStatus],
        token: int,
    ) -> tuple[CertificateStatus, datetime]:
        """The status of ``serial`` and when it was read, from the cache or from ``lookup``."""
        with self._lock:
            entry = self._statuses.get(serial)
            if entry is not None and now < entry.refresh_at:
                return entry.status, entry.read_at
        status = lookup(serial)
        with self._lock:
            if token != self._epoch:
                return status, now
            self._statuses[serial] = _Status(status, now, now + self._fresh_for)
            while len(self._statuses) > self._max:
                self._statuses.popitem(last=False)
        return status, now

    def __len__(self) -> int:
        return len(self._responses) + len(self._statuses)
