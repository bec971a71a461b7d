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


def test_one_new_pin_rule() -> None:
    from sscard.card.validation import validate_new_pin

    for good in ("135790", "24680", "8642", "112233", "1357"):
        assert validate_new_pin(good) == good
    for trivial, why in (("123456", "initial PIN"), ("0000", "one digit repeated"),
                         ("1234", "consecutive"), ("987654", "consecutive"),
                         ("123", "4 to 16 digits")):
        with pytest.raises(CardDataError, match=why) as refused:
            validate_new_pin(trivial)
        assert why == "initial PIN" or trivial not in str(refused.value)


def test_last_wrong_pin_says_blocked() -> None:
    from sscard.card import errors

    last = errors.error_for_status(0x63C0, "VERIFY", pin_command=True)
    assert isinstance(last, errors.PinBlocked) and "now blocked" in str(last)
    assert "0 tries" not in str(last)
    assert isinstance(errors.error_for_status(0x63C1, "VERIFY", pin_command=True),
                      errors.WrongPin)
    # a key's counter is not the PIN's: 63C0 outside PIN commands stays an authentication fault
    assert isinstance(errors.error_for_status(0x63C0, "EXTERNAL AUTHENTICATE"),
                      errors.AuthenticationFailed)


def test_holder_data_names_every_fault_at_once() -> None:
    from sscard.card.records import HolderData

    bad = HolderData(ssn="111111198101011111", name="张三", sex="M", ethnicity="77",
                     birthplace="991111", birth_date="19810101")
    assert [field for field, _ in bad.problems()] == ["ssn", "sex", "ethnicity", "birthplace"]
    with pytest.raises(CardDataError) as refused:
        bad.validate()
    for fragment in ("check digit", "GB/T 2261.1", "GB/T 3304", "GB/T 2260"):
        assert fragment in str(refused.value)
