"""Where the OCSP cache learns that something was revoked, across processes.

Every worker process of the service keeps its own cache, and a revocation may come from any
process (``sscard ca revoke``, the RA, another worker). The shared truth is the CA database, so
the cache asks it for a *revocation generation*: ``CertificateAuthority.revocation_generation()``,
a counter the CA bumps in the same transaction as every revocation (a hold made final too).

``Throttled`` bounds how often the database is asked: at most once per ``interval`` seconds per
process, so a hot cache costs one small query per interval, not one per OCSP request. A
revocation therefore shows within ``interval`` seconds in every worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

#: a callable returning a value that changes on every revocation
GenerationSource = Callable[[], int]


class Throttled:
    """Calls ``source`` at most once per ``interval`` seconds; between calls, the last value."""

    def __init__(self, source: GenerationSource, interval: float = 0.2) -> None:
        self._source = source
        self._interval = interval
        self._lock = threading.Lock()
        self._value = source()
        self._checked = time.monotonic()

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self._checked < self._interval:
            return self._value
        with self._lock:
            if now - self._checked >= self._interval:
                self._value = self._source()
                self._checked = time.monotonic()
            return self._value


def latest_revocation(engine: Any, issuer_id: int) -> datetime | None:
    """When the issuer last revoked a certificate (None if never)."""
    from ca.storage import CertificateRecord

    query = select(func.max(CertificateRecord.revoked_at)).where(
        CertificateRecord.issuer_id == issuer_id
    )
    with engine.connect() as conn:
        latest = conn.execute(query).scalar_one_or_none()
    return latest


def _issuer_id(authority: Any) -> int | None:
    return getattr(authority, "database_id", None)


def authority_generation(authority: Any) -> GenerationSource | None:
    """The CA's revocation generation; None for a backend without one (no cache refresh)."""
    method = getattr(authority, "revocation_generation", None)
    return method if callable(method) else None


def authority_latest_revocation(authority: Any) -> datetime | bool | None:
    """The latest revocation time of the authority's issuer; False when it cannot be known."""
    engine = getattr(authority, "engine", None)
    issuer_id = _issuer_id(authority)
    if engine is None or issuer_id is None:
        return False
    return latest_revocation(engine, issuer_id)
