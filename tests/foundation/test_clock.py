"""sscard.clock: the one clock type every service is given; the fake one tests advance."""

from __future__ import annotations

import datetime as dt

import pytest

from sscard.clock import FakeClock, system_clock


def test_system_clock_is_aware_utc() -> None:
    now = system_clock()
    assert now.tzinfo is not None and now.utcoffset() == dt.timedelta(0)


def test_fake_clock_stands_still_until_advanced() -> None:
    start = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    clock = FakeClock(start)
    assert clock() == clock() == start and clock().tzinfo == dt.UTC
    assert clock.advance(minutes=5) == start + dt.timedelta(minutes=5)
    assert clock.advance(dt.timedelta(seconds=1)) == clock()
    with pytest.raises(ValueError, match="does not go backwards"):
        clock.advance(seconds=-1)
    with pytest.raises(ValueError, match="naive"):
        FakeClock(dt.datetime(2026, 12, 6))
