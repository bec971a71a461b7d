"""Validation of card data on input: the social security number's check digit (ISO 7064
MOD 11-2), dates, GB/T 2260 region codes, card numbers and PINs."""

from __future__ import annotations

import datetime as dt
import itertools
import re

from sscard.codetables import PROVINCES


class CardDataError(ValueError):
    """A card data item that is malformed; the message names the item and the fault."""


_SSN_WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]
_CHECK_CHARS = "10X98765432"  # value (12 - sum mod 11) mod 11, 10 written as X

#: GB/T 2260 province-level codes (first two digits of a region code)
PROVINCE_CODES = frozenset(PROVINCES)


def ssn_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise CardDataError(f"social security number body must be 17 digits, got {first17!r}")
    total = sum(int(d) * w for d, w in zip(first17, _SSN_WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def validate_ssn(ssn: str) -> str:
    """Return the number (upper-case X) or raise CardDataError naming the fault."""
    ssn = ssn.strip().upper()
    if len(ssn) != 18:
        raise CardDataError(f"social security number must be 18 characters, got {len(ssn)}")
    expected = ssn_check_char(ssn[:17])
    if ssn[17] != expected:
        raise CardDataError(
            f"social security number {ssn}: check digit is {ssn[17]!r}, expected {expected!r}"
        )
    validate_region(ssn[:6], "social security number region")
    validate_date(ssn[6:14], "social security number birth date")
    return ssn


def synthetic_ssn(n: int, region: str = "350102", born: dt.date = dt.date(1950, 1, 1)) -> str:
    """A well-formed number with a right check digit for test and benchmark data: distinct
    ``n`` give distinct numbers (1000 a day of birth, from ``born``)."""
    body = f"{region}{born + dt.timedelta(days=n // 1000):%Y%m%d}{n % 1000:03d}"
    return body + ssn_check_char(body)


def validate_date(value: str, what: str = "date") -> dt.date:
    if not re.fullmatch(r"\d{8}", value):
        raise CardDataError(f"{what} must be YYYYMMDD, got {value!r}")
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError as exc:
        raise CardDataError(f"{what} {value} is not a calendar date ({exc})") from None


def validate_region(code: str, what: str = "region code") -> str:
    if not re.fullmatch(r"\d{6}", code):
        raise CardDataError(f"{what} must be 6 digits (GB/T 2260), got {code!r}")
    if code[:2] not in PROVINCE_CODES:
        raise CardDataError(f"{what} {code}: {code[:2]} is not a GB/T 2260 province code")
    return code


def validate_card_number(number: str) -> str:
    if not re.fullmatch(r"[A-Z0-9]{9}", number):
        raise CardDataError(f"card number must be 9 upper-case letters or digits, got {number!r}")
    return number


def validate_pin(pin: str, what: str = "PIN") -> str:
    """PINs are 4 to 16 decimal digits (CARD_SPEC §2)."""
    if not re.fullmatch(r"\d{4,16}", pin):
        raise CardDataError(f"{what} must be 4 to 16 digits")
    return pin


INITIAL_PIN = "123456"


def validate_new_pin(pin: str, what: str = "new PIN") -> str:
    """The one rule for every PIN a holder or an officer sets (personalisation, change,
    unblock, reload): 4 to 16 digits, and not trivial: not the initial PIN 123456 (MOHRSS
    -36), not one digit repeated (000000), not a run of consecutive digits (1234, 987654).
    The message never repeats the PIN."""
    validate_pin(pin, what)
    if pin == INITIAL_PIN:
        raise CardDataError(f"{what} cannot be the initial PIN 123456 (MOHRSS -36)")
    if len(set(pin)) == 1:
        raise CardDataError(f"{what} is too easy to guess (one digit repeated); choose another")
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    if steps in ({1}, {-1}):
        raise CardDataError(f"{what} is too easy to guess (a run of consecutive digits); "
                            "choose another")
    return pin
