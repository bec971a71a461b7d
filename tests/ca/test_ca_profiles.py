"""Profiles: the shipped files load; bad files are refused with the reason; requests that ask
for what their profile forbids are refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import x509

from ca.errors import ProfileError, RequestRefused
from ca.issuance import check_csr, check_public_key
from ca.profile import load_profile_file, load_profiles
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from tests.ca.conftest import HOLDER

PROFILES = load_profiles()
EXPECTED = {"cardholder-sign", "cardholder-encrypt", "ra-officer", "business-system",
            "business-system-encrypt", "tls-server", "ocsp-signer", "tsa", "sub-ca", "service"}


def test_shipped_profiles_load_and_are_versioned() -> None:
    assert set(PROFILES) == EXPECTED
    for p in PROFILES.values():
        assert p.version >= 1 and p.label == f"{p.name}@v{p.version}"
    assert PROFILES["tsa"].extended_key_usage == ("1.3.6.1.5.5.7.3.8",)
    assert PROFILES["tsa"].extended_key_usage_critical
    assert PROFILES["ocsp-signer"].ocsp_no_check
    assert PROFILES["sub-ca"].is_ca and not PROFILES["cardholder-sign"].is_ca


TOP = """\
name = "custom"
version = 2
validity_days = 30
key_algorithms = ["sm2"]
"""
KU = """[key_usage]
sm2 = ["digitalSignature"]
"""
GOOD = TOP + KU


def top(extra: str) -> str:
    """GOOD with ``extra`` among its top-level keys (TOML tables swallow what follows them)."""
    return TOP + extra + KU


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (top("colour = 'red'\n"), "unknown key(s) colour"),
        (GOOD.replace('"sm2"]\n[key', '"sm2", "dsa"]\n[key'), "unknown key algorithm 'dsa'"),
        (GOOD.replace("validity_days = 30", "validity_days = 0"), "validity_days"),
        (GOOD.replace("version = 2", "version = 'two'"), "'version' must be int"),
        (GOOD.replace('["digitalSignature"]', '["digitalSignatur"]'),
         "unknown usage(s) digitalSignatur"),
        (GOOD.replace('key_algorithms = ["sm2"]', 'key_algorithms = ["sm2", "rsa2048"]'),
         "no entry 'rsa'"),
        (GOOD + "[basic_constraints]\nca = true\n", "needs keyCertSign"),
        (GOOD.replace('["digitalSignature"]', '["keyCertSign"]'), "not a CA"),
        (GOOD + "[extended_key_usage]\nusages = ['serverAuthh']\n", "unknown usage 'serverAuthh'"),
        (top("certificate_policies = ['not-an-oid']\n"), "not a dotted OID"),
        (top("ocsp_no_check = true\n"), "OCSPSigning"),
        (top("social_insurance_number = 'maybe'\n"), "social_insurance_number must be"),
        (GOOD.replace('key_algorithms = ["sm2"]\n', 'key_algorithms = ["rsa2048"]\n')
         .replace('sm2 = ["digitalSignature"]', 'rsa = ["keyAgreement"]'),
         "keyAgreement does not fit an RSA key"),
        ("name = ", "not valid TOML"),
    ],
)
def test_bad_profiles_are_refused_with_the_reason(tmp_path: Path, text: str,
                                                  message: str) -> None:
    path = tmp_path / "custom.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError, match=r"custom\.toml") as err:
        load_profile_file(path)
    assert message in str(err.value)


def test_profile_name_must_match_file_and_home_overrides(tmp_path: Path) -> None:
    (tmp_path / "other.toml").write_text(GOOD, encoding="utf-8")
    with pytest.raises(ProfileError, match="differs from the file name"):
        load_profiles([tmp_path])
    (tmp_path / "other.toml").unlink()
    (tmp_path / "custom.toml").write_text(GOOD, encoding="utf-8")
    loaded = load_profiles([tmp_path])
    assert loaded["custom"].version == 2 and set(loaded) == EXPECTED | {"custom"}


def _csr(key: SoftwareKey, subject: str = HOLDER, **exts: tuple[object, bool]) -> bytes:
    builder = CsrBuilder().subject(parse_name(subject))
    for name, (value, critical) in exts.items():
        builder = builder.add_extension(name, value, critical)
    return bytes(builder.sign(key).dump())


SM2 = SoftwareKey.generate("sm2")


def test_a_plain_cardholder_csr_is_approved_with_the_ssn() -> None:
    approved = check_csr(_csr(SM2), PROFILES["cardholder-sign"])
    assert approved.social_insurance_number == "350102199001011238"
    assert approved.key_usage == {"digital_signature", "non_repudiation"}


@pytest.mark.parametrize(
    ("profile", "exts", "reason"),
    [
        ("cardholder-sign", {"basic_constraints": ({"ca": True}, True)},
         "asks for a CA certificate"),
        ("cardholder-sign", {"key_usage": ({"digital_signature", "key_cert_sign"}, True)},
         "key usage key_cert_sign is outside the profile's"),
        ("cardholder-sign", {"extended_key_usage": (["server_auth"], False)},
         "does not accept in requests"),
        ("ra-officer", {"extended_key_usage": (["server_auth"], False)},
         "extended key usage 1.3.6.1.5.5.7.3.1 is outside"),
        ("cardholder-sign", {"subject_alt_name": ([x509.GeneralName(
            name="dns_name", value="evil.example")], False)}, "does not accept in requests"),
        ("sub-ca", {"basic_constraints": ({"ca": True, "path_len_constraint": 3}, True)},
         "requested path length 3 exceeds"),
    ],
)
def test_csr_asking_for_what_the_profile_forbids_is_refused(profile: str, exts: dict[str, tuple[
        object, bool]], reason: str) -> None:
    with pytest.raises(RequestRefused, match=f"refused by profile {profile}") as err:
        check_csr(_csr(SM2, **exts), PROFILES[profile])  # type: ignore[arg-type]
    assert reason in str(err.value)


def test_key_algorithm_outside_the_profile_is_refused() -> None:
    ed = SoftwareKey.generate("ed25519")
    with pytest.raises(RequestRefused, match="ed25519 keys are not allowed"):
        check_public_key(ed.public_key(), HOLDER, PROFILES["cardholder-sign"])


def test_missing_subject_attribute_and_ssn_are_refused() -> None:
    with pytest.raises(RequestRefused, match="lacks required attribute serialNumber"):
        check_public_key(SM2.public_key(), "CN=张三,C=CN", PROFILES["cardholder-sign"])
    with pytest.raises(RequestRefused, match="carries no social insurance number"):
        check_public_key(SM2.public_key(), "CN=gw", PROFILES["tls-server"],
                         {"social_insurance_number": "350102199001011238"})
    with pytest.raises(RequestRefused, match="must be 6-32 letters"):
        check_public_key(SM2.public_key(), HOLDER, PROFILES["cardholder-sign"],
                         {"social_insurance_number": "12;DROP"})
    with pytest.raises(RequestRefused, match="unknown request field"):
        check_public_key(SM2.public_key(), HOLDER, PROFILES["cardholder-sign"], {"ca": True})
    with pytest.raises(RequestRefused, match="exceeds the profile's"):
        check_public_key(SM2.public_key(), HOLDER, PROFILES["cardholder-sign"],
                         {"validity_days": 99999})


def test_explicit_ssn_overrides_the_subject_serial_number() -> None:
    approved = check_public_key(SM2.public_key(), HOLDER, PROFILES["cardholder-encrypt"],
                                {"social_insurance_number": "11010519491231002X"})
    assert approved.social_insurance_number == "11010519491231002X"


def test_tampered_csr_fails_proof_of_possession() -> None:
    good = bytearray(_csr(SM2))
    good[-5] ^= 0x01  # inside the signature
    with pytest.raises(RequestRefused, match="no proof of possession"):
        check_csr(bytes(good), PROFILES["cardholder-sign"])
    with pytest.raises(RequestRefused, match="rejected"):
        check_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
                  PROFILES["cardholder-sign"])


@pytest.mark.parametrize(
    ("algorithm", "usages"),
    [
        ("sm2", {"key_agreement", "key_encipherment", "data_encipherment"}),
        ("ec-p256", {"key_agreement"}),
        ("rsa2048", {"key_encipherment", "data_encipherment"}),
    ],
)
def test_encryption_key_usages_fit_the_algorithm(algorithm: str, usages: set[str]) -> None:
    key = SoftwareKey.generate(algorithm)
    approved = check_public_key(key.public_key(), HOLDER, PROFILES["cardholder-encrypt"])
    assert approved.key_usage == usages


def test_business_system_encryption_profile_enciphers_and_never_authenticates() -> None:
    """The certificate a business system's documents are enveloped to (the gateway opens them
    for it): keyEncipherment under the business-system policy, no EKU (so never a gateway
    caller, never a document signer), no holder number; and not the RA's to issue."""
    from ca.authorization import RA_PROFILES, ApiOperation, Principal, decide
    from sscard.gateway.config import BUSINESS_SYSTEM_POLICY

    profile = PROFILES["business-system-encrypt"]
    key = SoftwareKey.generate("sm2")
    csr = CsrBuilder().subject(parse_name("CN=employment,O=就业登记系统,C=CN")).sign(key)
    approved = check_csr(csr.dump(), profile)
    assert approved.key_usage == {"key_encipherment", "data_encipherment"}
    assert profile.extended_key_usage == ()
    assert profile.certificate_policies == (BUSINESS_SYSTEM_POLICY,)
    with pytest.raises(RequestRefused):  # a cardholder's number has no place in it
        check_csr(CsrBuilder().subject(parse_name(
            "CN=x,O=y,serialNumber=110101199003070011,C=CN")).sign(key).dump(), profile)
    ra = Principal("ra", frozenset(ApiOperation), frozenset(RA_PROFILES), frozenset({"issuing"}))
    assert not decide(ra, ApiOperation.ISSUE, "issuing", profile).allowed
