"""Issue 12 finding 13: the subject and subjectAltName content a profile lets through.

Each attack is a real CSR (asn1crypto names built attribute by attribute, so that duplicates,
NUL characters and oversized values reach the CA as an attacker would send them) checked
against the shipped profiles; bad profile files are refused on load with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from ca.errors import ProfileError, RequestRefused
from ca.issuance import check_csr, check_public_key
from ca.profile import bad_characters, load_profile_file, load_profiles
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder

PROFILES = load_profiles()
KEY = SoftwareKey.generate("ec-p256")
SSN = "350102199001011238"
DEPARTMENT = "某省人力资源和社会保障厅"



def name(*pairs: tuple[str, str]) -> x509.Name:
    """A Name with one RDN per pair, in order, duplicates and all."""
    rdns = []
    for kind, value in pairs:
        printable = kind in ("serial_number", "country_name")  # RFC 5280 App. A
        encoded = x509.DirectoryString(name="printable_string" if printable else "utf8_string",
                                       value=value)
        rdns.append(x509.RelativeDistinguishedName([
            x509.NameTypeAndValue({"type": kind, "value": encoded})]))
    return x509.Name(name="", value=x509.RDNSequence(rdns))


def csr(subject: x509.Name, dns: list[str] | None = None) -> bytes:
    builder = CsrBuilder().subject(subject)
    if dns is not None:
        builder = builder.add_extension("subject_alt_name", [
            x509.GeneralName(name="dns_name", value=d) for d in dns], False)
    return bytes(builder.sign(KEY).dump())


HOLDER = (("common_name", "张三"), ("serial_number", SSN), ("country_name", "CN"))


def test_a_well_formed_cardholder_subject_passes() -> None:
    approved = check_csr(csr(name(*HOLDER)), PROFILES["cardholder-sign"])
    assert approved.social_insurance_number == SSN


@pytest.mark.parametrize(("pairs", "reason"), [
    ((*HOLDER, ("common_name", "李四")), "more than 1 CN"),
    ((("common_name", "张" * 5000), ("serial_number", SSN)), "5000 characters long (at most 64)"),
    ((("common_name", "张三\x00李四"), ("serial_number", SSN)), "U+0000"),
    ((("common_name", "张三\u202e"), ("serial_number", SSN)), "U+202E"),
    ((("common_name", "张三\n"), ("serial_number", SSN)), "white space"),
    ((*HOLDER, ("organization_name", DEPARTMENT)), "attribute O is not allowed"),
    ((*HOLDER, ("organizational_unit_name", "信息中心")), "attribute OU is not allowed"),
    ((*HOLDER, ("title", "处长")), "attribute title is not allowed"),
    ((("common_name", "张三"), ("serial_number", "1234"),), "does not match"),
    ((("common_name", "张三"), ("serial_number", SSN), ("country_name", "US")),
     "'US' is not one of the profile's values (CN)"),
    ((("serial_number", SSN),), "lacks required attribute CN"),
    ((("common_name", "张三"), ("serial_number", SSN), ("serial_number", "350102199202022347")),
     "more than 1 serialNumber"),
])
@pytest.mark.parametrize("profile", ["cardholder-sign", "cardholder-encrypt"])
def test_cardholder_subject_attacks_are_refused(pairs: tuple[tuple[str, str], ...], reason: str,
                                                profile: str) -> None:
    with pytest.raises(RequestRefused, match=f"refused by profile {profile}") as err:
        check_csr(csr(name(*pairs)), PROFILES[profile])
    assert reason in str(err.value)


def test_the_public_key_path_applies_the_same_rules() -> None:
    """The KMC's encryption key goes through check_public_key with a textual subject."""
    with pytest.raises(RequestRefused, match="attribute O is not allowed"):
        check_public_key(KEY.public_key(), f"CN=张三,serialNumber={SSN},O={DEPARTMENT}",
                         PROFILES["cardholder-encrypt"])
    with pytest.raises(RequestRefused, match="more than 1 CN"):
        check_public_key(KEY.public_key(), f"CN=张三,CN=李四,serialNumber={SSN}",
                         PROFILES["cardholder-encrypt"])


@pytest.mark.parametrize("profile", ["business-system", "tls-server", "ra-officer", "tsa",
                                     "ocsp-signer", "sub-ca", "service"])
def test_every_profile_limits_cn_count_length_and_characters(profile: str) -> None:
    base = (("common_name", "gw.example"), ("organization_name", "就业登记系统"))
    for pairs, reason in [
        ((*base, ("common_name", "other.example")), "more than 1 CN"),
        ((("common_name", "x" * 65), base[1]), "65 characters long"),
        ((("common_name", "gw\x00.example"), base[1]), "U+0000"),
    ]:
        with pytest.raises(RequestRefused, match=f"refused by profile {profile}") as err:
            check_csr(csr(name(*pairs)), PROFILES[profile])
        assert reason in str(err.value)
    check_csr(csr(name(*base)), PROFILES[profile])  # the plain one passes


@pytest.mark.parametrize(("dns", "reason"), [
    (["*.example.org"], "wildcard DNS name '*.example.org' is not allowed"),
    (["gw.example", "*.gw.example"], "wildcard"),
    (["bad_host.example"], "is not a valid DNS name"),
    (["-gw.example"], "is not a valid DNS name"),
    ([f"h{i}.example" for i in range(11)], "11 entries (at most 10)"),
    ([], "subjectAltName is empty"),
])
def test_tls_server_san_rules(dns: list[str], reason: str) -> None:
    subject = name(("common_name", "gw.example"))
    with pytest.raises(RequestRefused, match="refused by profile tls-server") as err:
        check_csr(csr(subject, dns), PROFILES["tls-server"])
    assert reason in str(err.value)
    if dns:  # the CLI path (--dns) is held to the same rule
        with pytest.raises(RequestRefused, match="refused by profile tls-server"):
            check_csr(csr(subject), PROFILES["tls-server"], {"dns_names": dns})


def test_tls_server_accepts_plain_host_names() -> None:
    approved = check_csr(csr(name(("common_name", "gw.example")), ["gw.example", "ra.example"]),
                         PROFILES["tls-server"])
    assert [g.native for g in approved.subject_alt_name] == ["gw.example", "ra.example"]


BASE = """\
name = "custom"
version = 1
validity_days = 30
key_algorithms = ["sm2"]
"""
KU = '[key_usage]\nsm2 = ["digitalSignature"]\n'


@pytest.mark.parametrize(("tables", "message"), [
    ('[subject.CN]\nmin = 2\nmax = 1\n', "min 2 and max 1"),
    ('[subject.XX]\nmin = 1\n', "unknown subject attribute 'XX'"),
    ('[subject.CN]\nmin = 1\nmax_length = 5000\n', "max_length 5000 out of range 1..64"),
    ('[subject.CN]\nmin = 1\npattern = "(["\n', "pattern is not a regular expression"),
    ('[subject.CN]\nmin = 1\nvalues = []\n', "values is empty"),
    ('[subject.CN]\nmin = 1\ncolour = 1\n', "unknown key(s) colour"),
    ('[subject.O]\nmax = 1\n', "requires no attribute"),
    ('[subject.CN]\nmin = 1\n[subject_alt_name]\ntypes = ["x400"]\n', "unknown type 'x400'"),
])
def test_bad_subject_rules_are_refused_on_load(tmp_path: Path, tables: str,
                                               message: str) -> None:
    path = tmp_path / "custom.toml"
    path.write_text(BASE + tables + KU, encoding="utf-8")
    with pytest.raises(ProfileError, match=r"custom\.toml") as err:
        load_profile_file(path)
    assert message in str(err.value)


def test_subject_required_and_subject_tables_do_not_mix(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text(BASE + 'subject_required = ["CN"]\n[subject.CN]\nmin = 1\n' + KU,
                    encoding="utf-8")
    with pytest.raises(ProfileError, match="either subject_required or"):
        load_profile_file(path)


def test_an_older_profile_without_subject_tables_still_bounds_the_subject(
        tmp_path: Path) -> None:
    """A home profile written before [subject] existed: its required attributes stay required,
    and every attribute is still limited to one value, 64 characters and clean characters."""
    path = tmp_path / "custom.toml"
    path.write_text(BASE + 'subject_required = ["CN"]\n' + KU, encoding="utf-8")
    profile = load_profile_file(path)
    sm2 = SoftwareKey.generate("sm2")
    check_public_key(sm2.public_key(), "CN=ok,O=org", profile)
    for subject, reason in [("O=org", "lacks required attribute CN"),
                            ("CN=a,CN=b", "more than 1 CN"),
                            ("CN=" + "x" * 65, "65 characters")]:
        with pytest.raises(RequestRefused, match=reason):
            check_public_key(sm2.public_key(), subject, profile)


# -- issue 14: the holder's ID number is checked at the CA, not only at the card tools -------

BAD_CHECK_DIGIT = SSN[:17] + ("0" if SSN[17] != "0" else "1")


@pytest.mark.parametrize("profile", ["cardholder-sign", "cardholder-encrypt"])
@pytest.mark.parametrize(("ssn", "reason"), [
    (BAD_CHECK_DIGIT, f"check digit is '{BAD_CHECK_DIGIT[17]}', expected '{SSN[17]}'"),
    ("350102199013011230", "not a calendar date|check digit"),
    ("35010219900101123x", "pattern"),
    ("35010219900101123", "pattern"),
])
def test_cardholder_id_number_checked_at_the_ca(profile: str, ssn: str, reason: str) -> None:
    subject = name(("common_name", "张三"), ("serial_number", ssn), ("country_name", "CN"))
    with pytest.raises(RequestRefused, match=reason):
        check_csr(csr(subject), PROFILES[profile])


def test_a_province_outside_gb2260_is_refused_even_with_a_right_check_digit() -> None:
    from sscard.card.validation import ssn_check_char

    body = "99010219900101123"
    subject = name(("common_name", "张三"), ("serial_number", body + ssn_check_char(body)))
    with pytest.raises(RequestRefused, match="99 is not a GB/T 2260 province code"):
        check_csr(csr(subject), PROFILES["cardholder-sign"])


def test_the_sin_field_gets_the_same_check() -> None:
    """A right serialNumber but a wrong number in the social_insurance_number field."""
    with pytest.raises(RequestRefused, match=r"social insurance number: .*check digit"):
        check_public_key(KEY.public_key(), f"CN=张三,serialNumber={SSN}",
                         PROFILES["cardholder-sign"],
                         {"social_insurance_number": BAD_CHECK_DIGIT})


def test_an_unknown_named_check_is_refused_on_load(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "ca" / "profiles" / "cardholder-sign.toml").read_text(
        encoding="utf-8").replace('check = "gb11643"', 'check = "gb11634"')
    path = tmp_path / "cardholder-sign.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError, match="unknown check 'gb11634'; known: gb11643"):
        load_profile_file(path)


def test_wrong_check_digit_refused_over_the_ca_http_api(tmp_path: Path) -> None:
    """The CA's API answers 422 naming the fault, and issues nothing."""
    import json
    import threading

    import requests
    from werkzeug.serving import make_server

    from ca.authority import CertificateAuthority
    from ca.authorization import AccessConfig, ApiOperation, Principal
    from ca.service import ServiceConfig, create_app
    from sscard.audit import AuditLog
    from sscard.x509.pem import der_to_pem

    (tmp_path / "ca.toml").write_text(
        'base_url = "http://127.0.0.1:8080"\n[root]\nname = "root"\n'
        'subject = "CN=Holder Check Root,C=CN"\nalgorithm = "ec-p256"\nvalidity_days = 3650\n'
        '[[issuing]]\nname = "issuing"\nsubject = "CN=Holder Check CA,C=CN"\n'
        'algorithm = "ec-p256"\nvalidity_days = 1825\npath_length = 0\n', encoding="utf-8")
    audit = AuditLog.at_home(tmp_path / "home")
    authority = CertificateAuthority.init(tmp_path / "home", tmp_path / "ca.toml", audit=audit)
    token = "holder-check-token-0123456789abcdef"
    ra = Principal("ra", frozenset(ApiOperation), frozenset({"cardholder-sign"}),
                   frozenset({"issuing"}), token_sha256=ServiceConfig.hash_token(token))
    app = create_app(ServiceConfig(authority=authority, audit_log=audit,
                                   access=AccessConfig({"ra": ra})))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        def ask(ssn: str) -> requests.Response:
            subject = name(("common_name", "张三"), ("serial_number", ssn), ("country_name", "CN"))
            pem = der_to_pem(csr(subject), "CERTIFICATE REQUEST").decode()
            return requests.post(f"http://127.0.0.1:{server.server_port}/api/v1/certificates",
                                 data=json.dumps({"profile": "cardholder-sign", "csr": pem}),
                                 headers={"Authorization": f"Bearer {token}"}, timeout=30)

        refused = ask(BAD_CHECK_DIGIT)
        assert refused.status_code == 422, refused.text
        assert (f"serialNumber: social security number {BAD_CHECK_DIGIT}: check digit is "
                f"'{BAD_CHECK_DIGIT[17]}', expected '{SSN[17]}'") in refused.json()["detail"]
        assert ask(SSN).status_code in (200, 201)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        authority.close()


_REFUSED_CATEGORIES = ("Cc", "Cf", "Cs", "Cn", "Co", "Zl", "Zp")


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
       | st.sampled_from(["张三", "Zhang San", "a\u2028b", "x\u202ey", "王\u3000五", "\ue000",
                          "\ud800", "a\x00", "\u0378", "a\u200bb"]))
def test_bad_characters_refuses_exactly_the_listed_categories(value: str) -> None:
    """bad_characters' shortcut for printable values refuses the same values as walking every
    character's Unicode category (control, format, surrogate, unassigned, private use, line
    and paragraph separators)."""
    import unicodedata

    walked = next((ch for ch in value if unicodedata.category(ch) in _REFUSED_CATEGORIES), None)
    why = bad_characters(value)
    if value != value.strip():
        assert why == "leading or trailing white space"
    elif walked is None:
        assert why is None
    else:
        assert why is not None and f"U+{ord(walked):04X}" in why
