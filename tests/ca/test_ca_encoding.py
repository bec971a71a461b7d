"""The hand-written DER on the hot paths equals what asn1crypto and the project's builders
produce: certificate TBS (against CertificateBuilder), CRL entries (against asn1crypto's
RevokedCertificate), subjects (against parse_name) and SPKIs/key identifiers."""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import crl as asn1crl
from asn1crypto import x509

from ca.crl import RevokedItem, encode_entries
from ca.issuance import Issuer, check_public_key, reference_certificate, sign_certificate, tbs_der
from ca.profile import load_profiles
from ca.request_encoding import spki_and_key_id, subject_from_text
from sscard import der
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import RevokedEntry
from sscard.x509.errors import BuilderError
from sscard.x509.extensions import key_identifier
from sscard.x509.names import parse_name
from sscard.x509.verify import verify_certificate_signature
from tests.ca.conftest import HOLDER

PROFILES = load_profiles()
NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, -1, -129, 2**159 - 1, 2**64])
def test_integer_matches_asn1crypto(value: int) -> None:
    from asn1crypto import core

    assert der.integer(value) == core.Integer(value).dump()


def test_time_switches_to_generalized_in_2050() -> None:
    assert der.time(dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC))[0] == 0x17
    assert der.time(dt.datetime(2050, 1, 1, tzinfo=dt.UTC))[0] == 0x18
    with pytest.raises(ValueError, match="timezone-aware"):
        der.time(dt.datetime(2030, 1, 1))


@pytest.mark.parametrize("algorithm", ["sm2", "ec-p256", "rsa2048"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_fast_tbs_equals_the_certificate_builder(algorithm: str, profile: str) -> None:
    root_key = SoftwareKey.generate(algorithm)
    root_approved = check_public_key(root_key.public_key(), "CN=Root,O=人社厅,C=CN",
                                     PROFILES["sub-ca"])
    root = x509.Certificate.load(sign_certificate(None, root_approved, 7, NOW,
                                                  self_key=root_key))
    assert reference_certificate(None, root_approved, 7, NOW, root_key).dump() == \
        root["tbs_certificate"].dump()
    issuer = Issuer(root, root_key, "http://ca/crl", "http://ca/ocsp", "http://ca/ca.crt")
    holder = SoftwareKey.generate(algorithm)
    extra = {"dns_names": ["gw.example"]} if profile == "tls-server" else {}
    # a subject each profile's rules accept: a cardholder speaks for no organisation
    subject = HOLDER if profile.startswith("cardholder") else "CN=gw.example,O=部门,C=CN"
    approved = check_public_key(holder.public_key(), subject, PROFILES[profile], extra)
    signature_algorithm = root_key.default_signature_algorithm
    fast = tbs_der(issuer, approved, 2**158 + 5, NOW, signature_algorithm)
    assert fast == reference_certificate(issuer, approved, 2**158 + 5, NOW).dump()
    cert = x509.Certificate.load(sign_certificate(issuer, approved, 2**158 + 5, NOW))
    verify_certificate_signature(cert, root)


def test_validity_encoded_once_a_second_is_each_certificates_own() -> None:
    """The Validity is reused within a second for the same validity: certificates a
    moment, a second, or a profile apart, and one capped at the issuer's end, still carry
    their own (the CertificateBuilder's)."""
    root_key = SoftwareKey.generate("sm2")
    root_approved = check_public_key(root_key.public_key(), "CN=Root,O=人社厅,C=CN",
                                     PROFILES["sub-ca"])
    root = x509.Certificate.load(sign_certificate(None, root_approved, 7, NOW,
                                                  self_key=root_key))
    issuer = Issuer(root, root_key)
    root_end = root["tbs_certificate"]["validity"]["not_after"].native
    holder = SoftwareKey.generate("sm2").public_key()
    approvals = [check_public_key(holder, "CN=gw.example,O=部门,C=CN", PROFILES[name])
                 for name in ("business-system", "service")]
    assert approvals[0].validity != approvals[1].validity
    instants = [NOW, NOW + dt.timedelta(microseconds=300_000), NOW + dt.timedelta(seconds=1),
                NOW, root_end - dt.timedelta(days=10), root_end - dt.timedelta(days=10)]
    for when in instants:
        for approved in approvals:
            assert tbs_der(issuer, approved, 9, when, root_key.default_signature_algorithm) \
                == reference_certificate(issuer, approved, 9, when).dump()


def test_crl_entries_equal_asn1crypto() -> None:
    when = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    items = [
        RevokedItem(1, when),
        RevokedItem(2**158 + 3, when, 1),
        RevokedItem(300, when + dt.timedelta(seconds=1), 4, when - dt.timedelta(days=3)),
        RevokedItem(301, dt.datetime(2051, 1, 1, tzinfo=dt.UTC), None, when),
        RevokedItem(302, when, 0),  # unspecified: no reasonCode extension (RFC 5280 §5.3.1)
    ]
    names = {1: "key_compromise", 4: "superseded"}
    expected = asn1crl.RevokedCertificates([
        RevokedEntry(i.serial, i.revoked_at, names.get(i.reason or 0), i.invalidity_date).asn1()
        for i in items]).dump()
    assert der.sequence(encode_entries(items)) == expected


@pytest.mark.parametrize("text", [
    HOLDER,
    "CN=gw.example",
    " CN = 李四 , OU=信息中心,O=某省人社厅,L=福州,ST=福建,C=CN",
    "serialNumber=11010519491231002X,CN=王五",
])
def test_fast_subject_equals_parse_name(text: str) -> None:
    subject = subject_from_text(text)
    assert subject.der == parse_name(text).dump()
    assert subject.name.dump() == subject.der


@pytest.mark.parametrize(("text", "error"), [
    ("CN=x,C=China", "two-letter"),
    ("CN=x,serialNumber=张三", "PrintableString"),
    ("CN=x,foo=bar", "unknown name attribute"),
    ("CN=", "empty"),
])
def test_bad_subjects_still_get_parse_names_errors(text: str, error: str) -> None:
    with pytest.raises(BuilderError, match=error):
        subject_from_text(text)


def test_escaped_and_slash_forms_fall_back_to_parse_name() -> None:
    for text in ("CN=a\\,b,C=CN", "/CN=张三/C=CN", "CN=x,SN=y"):
        assert subject_from_text(text).der == parse_name(text).dump()


@pytest.mark.parametrize("algorithm", ["sm2", "ec-p256", "ec-p384", "rsa2048"])
def test_fast_spki_and_key_id(algorithm: str) -> None:
    key = SoftwareKey.generate(algorithm).public_key()
    spki, key_id = spki_and_key_id(key)
    assert spki == key.spki_der() and key_id == key_identifier(key)


def test_rows_from_the_database_encode_like_items() -> None:
    from ca.crl import encode_rows
    from ca.records import serial_to_hex

    when = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    items = [
        RevokedItem(0x80, when, 1),  # high bit set: needs a leading zero octet
        RevokedItem(2**158 + 3, when, None, when - dt.timedelta(days=1)),
        RevokedItem(5, when + dt.timedelta(seconds=3), 9),
    ]
    rows = [(serial_to_hex(i.serial), i.revoked_at.replace(tzinfo=None), i.reason,
             i.invalidity_date) for i in items]  # SQLite gives naive UTC times back
    assert encode_rows(rows) == encode_entries(items)
