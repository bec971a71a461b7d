"""Log-in throttling: failed attempts counted per key (``account:<user>@<source>`` and
``source:<source>``), a lock-out with back-off at the limit.

The count is taken *before* the password is checked, by an atomic conditional UPDATE
(``failures < limit``), so of any number of parallel guesses exactly the remaining ones are
evaluated, on SQLite and PostgreSQL alike. A lock-out lasts ``lockout``, doubling with each
further one up to ``lockout_max``; then the key counts from zero again."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ra.models import LoginThrottle
from sscard.clock import Clock, system_clock


def keys(username: str, source: str) -> tuple[str, str]:
    """The (account at source, source) keys of one log-in attempt."""
    return f"account:{username}@{source}"[:200], f"source:{source}"[:200]


class Throttle:
    def __init__(self, tx: Callable[[], AbstractContextManager[Session]],
                 lockout: dt.timedelta, lockout_max: dt.timedelta,
                 clock: Clock = system_clock) -> None:
        self._tx = tx  # a new transaction, committed on leaving
        self.lockout, self.lockout_max, self.clock = lockout, lockout_max, clock

    def take(self, key: str, account: str | None, limit: int) -> bool:
        """Reserve one evaluation for ``key``; False while it is locked out. An expired
        lock-out lifts first."""
        now = self.clock()
        with self._tx() as s:
            known = s.scalar(select(LoginThrottle.key).where(LoginThrottle.key == key))
        if known is None:
            with self._tx() as s:  # forget keys idle for longer than the longest lock-out
                s.execute(delete(LoginThrottle).where(
                    LoginThrottle.updated_at < now - self.lockout_max,
                    or_(LoginThrottle.blocked_until.is_(None),
                        LoginThrottle.blocked_until < now)))
            with contextlib.suppress(IntegrityError), self._tx() as s:
                s.execute(insert(LoginThrottle).values(key=key, account=account, failures=0,
                                                       lockouts=0, blocked_until=None,
                                                       updated_at=now))
        with self._tx() as s:
            s.execute(update(LoginThrottle).where(
                LoginThrottle.key == key, LoginThrottle.blocked_until.is_not(None),
                LoginThrottle.blocked_until <= now).values(failures=0, blocked_until=None))
        with self._tx() as s:
            taken = s.execute(update(LoginThrottle).where(
                LoginThrottle.key == key, LoginThrottle.failures < limit,
                LoginThrottle.blocked_until.is_(None)).values(
                    failures=LoginThrottle.failures + 1, updated_at=now))
            return bool(taken.rowcount == 1)  # type: ignore[attr-defined]

    def failed(self, key: str, limit: int) -> bool:
        """A reserved attempt failed: at the limit, lock the key out (one caller wins the
        conditional UPDATE). Returns whether this call locked it."""
        with self._tx() as s:
            row = s.get(LoginThrottle, key)
            if row is None or row.failures < limit or row.blocked_until is not None:
                return False
            period = min(self.lockout * 2 ** min(row.lockouts, 20), self.lockout_max)
            locked = s.execute(update(LoginThrottle).where(
                LoginThrottle.key == key, LoginThrottle.blocked_until.is_(None)).values(
                    blocked_until=self.clock() + period, lockouts=LoginThrottle.lockouts + 1))
            return bool(locked.rowcount == 1)  # type: ignore[attr-defined]

    def succeeded(self, *keys: str) -> None:
        with self._tx() as s:
            s.execute(update(LoginThrottle).where(LoginThrottle.key.in_(keys)).values(
                failures=0, lockouts=0, blocked_until=None))

    def unlock(self, s: Session, account: str) -> None:
        """Lift every lock-out of ``account`` (from any source), inside the caller's
        transaction."""
        s.execute(delete(LoginThrottle).where(LoginThrottle.account == account))

    def locked_accounts(self, s: Session) -> set[str]:
        now = self.clock()
        return {a for a, until in s.execute(
            select(LoginThrottle.account, LoginThrottle.blocked_until).where(
                LoginThrottle.account.is_not(None), LoginThrottle.blocked_until.is_not(None)))
            if a is not None and until is not None and until > now}

