import pytest

from sscard.card.validation import CardDataError, ssn_check_char, validate_pin, validate_ssn


@pytest.mark.parametrize(
    "ssn",
    # published examples: GB 11643 annex, the MOHRSS sample card, a number ending in X
    ["11010519491231002X", "111111198101011110", "440524188001010014"],
)
def test_valid_numbers(ssn):
    assert validate_ssn(ssn.lower()) == ssn


def test_check_digit_computed_independently():
    # ISO 7064 MOD 11-2 written out: sum of d_i * 2^(17-i) mod 11, check = (12 - sum) mod 11
    body = "11010519491231002"
    s = sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(body))
    value = (12 - s % 11) % 11
    assert ssn_check_char(body) == ("X" if value == 10 else str(value))


@pytest.mark.parametrize(
    ("ssn", "message"),
    [
        ("11010519491231002", "must be 18 characters"),
        ("110105194912310021", "check digit is '1', expected 'X'"),
        ("11010519491331002X", "body|check digit"),
        ("1101051949123100AX", "17 digits"),
    ],
)
def test_invalid_numbers(ssn, message):
    with pytest.raises(CardDataError, match=message):
        validate_ssn(ssn)


def test_pin_rules():
    assert validate_pin("1234") == "1234"
    for bad in ("123", "12345678901234567", "12a456"):
        with pytest.raises(CardDataError, match="4 to 16 digits"):
            validate_pin(bad)
