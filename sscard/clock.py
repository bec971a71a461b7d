"""One clock for every service (DESIGN.md §8, Boulder's injected clock): the CA, the KMC, the
RA and the gateway read the time from a :class:`Clock` they are given, so tests advance a
:class:`FakeClock` instead of sleeping, and no expiry, lock-out or validity check depends on how
fast the test machine is.

A clock is any callable returning an aware UTC ``datetime``; :func:`system_clock` is the real
one."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol


class Clock(Protocol):
    """Where a service reads the time: an aware datetime in UTC."""

    def __call__(self) -> dt.datetime: ...


def system_clock() -> dt.datetime:
    """The machine's time, in UTC."""
    return dt.datetime.now(dt.UTC)


class FakeClock:
    """A clock that stands still until advanced (tests): ``clock.advance(minutes=5)``."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        start = start or system_clock()
        if start.tzinfo is None:
            raise ValueError("a clock's time is aware (UTC); got a naive datetime")
        self._now = start.astimezone(dt.UTC)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, delta: dt.timedelta | None = None, **parts: float) -> dt.datetime:
        """Move the time on by ``delta`` or ``timedelta(**parts)``; never backwards."""
        step = delta if delta is not None else dt.timedelta(**parts)
        if step < dt.timedelta(0):
            raise ValueError(f"a clock does not go backwards (advance by {step})")
        with self._lock:
            self._now += step
            return self._now
