"""Builders refuse misuse; parsers refuse malformed input with X509ParseError, never a crash."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from asn1crypto import x509 as asn1x509

from sscard.crypto.algorithms import SignatureAlgorithm
from sscard.keys.software import SoftwareKey
from sscard.x509 import parse, verify
from sscard.x509.builder import CertificateBuilder, CrlBuilder, CsrBuilder
from sscard.x509.errors import BuilderError, X509ParseError
from sscard.x509.names import format_name, name_attribute, parse_name
from sscard.x509.pem import der_to_pem

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def sm2_key() -> SoftwareKey:
    return SoftwareKey.generate("sm2")


def _cert(key: SoftwareKey, **kw: object) -> asn1x509.Certificate:
    name = parse_name("CN=张三,serialNumber=350102199001011234,O=福建省人社厅,C=CN")
    return (CertificateBuilder().subject(name).issuer(name).public_key(key.public_key())
            .serial_number(0x1234567890ABCDEF1).not_valid_before(NOW)
            .not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension("social_insurance_number", "350102199001011234")
            .sign(key))


def test_chinese_names_round_trip_as_utf8(sm2_key: SoftwareKey) -> None:
    cert = _cert(sm2_key)
    again = parse.load_certificate(cert.dump())
    subject = again["tbs_certificate"]["subject"]
    assert format_name(subject) == (
        "CN=张三, serialNumber=350102199001011234, O=福建省人社厅, C=CN")
    cn = subject.chosen[0][0]["value"]
    assert cn.name == "utf8_string"
    assert name_attribute(subject, "serial_number") == "350102199001011234"
    ext = {e["extn_id"].native: e["extn_value"].parsed.native
           for e in again["tbs_certificate"]["extensions"]}
    assert ext["social_insurance_number"] == "350102199001011234"
    assert again["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
    verify.verify_certificate_signature(again, again)


def test_pem_and_der_both_load(sm2_key: SoftwareKey) -> None:
    der = _cert(sm2_key).dump()
    assert parse.load_certificate(der_to_pem(der, "CERTIFICATE")).dump() == der
    with pytest.raises(X509ParseError, match="expected a PEM CERTIFICATE"):
        parse.load_certificate(der_to_pem(der, "X509 CRL"))


def test_generalized_time_after_2049(sm2_key: SoftwareKey) -> None:
    name = parse_name("CN=long")
    cert = (CertificateBuilder().subject(name).issuer(name).public_key(sm2_key.public_key())
            .serial_number(7).not_valid_before(NOW)
            .not_valid_after(dt.datetime(2051, 1, 1, tzinfo=dt.UTC)).sign(sm2_key))
    validity = cert["tbs_certificate"]["validity"]
    assert validity["not_before"].name == "utc_time"
    assert validity["not_after"].name == "general_time"


def test_builder_refuses_misuse(sm2_key: SoftwareKey) -> None:
    b = CertificateBuilder().subject(parse_name("CN=a"))
    with pytest.raises(BuilderError, match="subject set twice"):
        b.subject(parse_name("CN=b"))
    with pytest.raises(BuilderError, match="needs issuer"):
        b.sign(sm2_key)
    with pytest.raises(BuilderError, match="set twice"):
        b.add_extension("key_usage", {"digital_signature"}).add_extension(
            "key_usage", {"key_cert_sign"})
    with pytest.raises(BuilderError, match="positive"):
        CertificateBuilder().serial_number(0)
    with pytest.raises(BuilderError, match="timezone"):
        (CertificateBuilder().subject(parse_name("CN=a")).issuer(parse_name("CN=a"))
         .public_key(sm2_key.public_key()).serial_number(1)
         .not_valid_before(dt.datetime(2026, 1, 1)).not_valid_after(dt.datetime(2027, 1, 1))
         .sign(sm2_key))
    with pytest.raises(BuilderError, match="does not fit"):
        CsrBuilder().subject(parse_name("CN=a")).sign(
            sm2_key, SignatureAlgorithm.ECDSA_SHA256)
    with pytest.raises(BuilderError, match="nextUpdate"):
        (CrlBuilder().issuer(parse_name("CN=a")).this_update(NOW).next_update(NOW)
         .sign(sm2_key))


@pytest.mark.parametrize("text,message", [
    ("CN", "no '='"),
    ("XX=1", "unknown name attribute"),
    ("C=China", "two-letter"),
    ("serialNumber=张三", "PrintableString"),
    ("CN=", "empty"),
    ("", "empty distinguished name"),
])
def test_bad_names_are_named(text: str, message: str) -> None:
    with pytest.raises(BuilderError, match=message):
        parse_name(text)


def test_crl_entries_and_extensions(sm2_key: SoftwareKey) -> None:
    crl = (CrlBuilder().issuer(parse_name("CN=CA")).this_update(NOW)
           .next_update(NOW + dt.timedelta(days=1)).crl_number(42).delta_crl_indicator(40)
           .add_revoked(0xABC, NOW, "key_compromise", invalidity_date=NOW - dt.timedelta(days=1))
           .add_revoked(0xDEF, NOW)
           .sign(sm2_key))
    again = parse.load_crl(crl.dump())
    tbs = again["tbs_cert_list"]
    exts = {e["extn_id"].native: (e["critical"].native, e["extn_value"].native)
            for e in tbs["crl_extensions"]}
    assert exts["crl_number"] == (False, 42)
    assert exts["delta_crl_indicator"] == (True, 40)
    first = tbs["revoked_certificates"][0]
    entry_exts = {e["extn_id"].native: e["extn_value"].native
                  for e in first["crl_entry_extensions"]}
    assert entry_exts["crl_reason"] == "key_compromise"
    assert entry_exts["invalidity_date"] == NOW - dt.timedelta(days=1)


def test_mutated_der_never_crashes(sm2_key: SoftwareKey) -> None:
    """Truncations and bit flips of a certificate, CSR and CRL: X509ParseError or a valid
    parse whose signature then fails; never another exception."""
    rng = random.Random(1234)
    samples = [
        (parse.load_certificate, _cert(sm2_key).dump()),
        (parse.load_csr, CsrBuilder().subject(parse_name("CN=x")).sign(sm2_key).dump()),
        (parse.load_crl, CrlBuilder().issuer(parse_name("CN=x")).this_update(NOW)
         .add_revoked(5, NOW, "superseded").sign(sm2_key).dump()),
    ]
    rejected = 0
    for loader, der in samples:
        for i in range(300):
            mutated = bytearray(der)
            if i % 3 == 0:
                mutated = mutated[: rng.randrange(len(der))]
            else:
                for _ in range(rng.randint(1, 4)):
                    mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
            try:
                loader(bytes(mutated))
            except X509ParseError:
                rejected += 1
    assert rejected > 300


def test_empty_and_garbage_inputs_are_named() -> None:
    with pytest.raises(X509ParseError, match="empty input"):
        parse.load_certificate(b"")
    with pytest.raises(X509ParseError, match="malformed certificate"):
        parse.load_certificate(b"\x30\x03\x02\x01\x01")
    with pytest.raises(X509ParseError, match="not a certificate, CSR or CRL"):
        parse.load_any(b"hello")
    with pytest.raises(X509ParseError, match="malformed PEM"):
        parse.load_certificate(b"-----BEGIN CERTIFICATE-----\n!!!\n")


def test_csr_proof_of_possession_is_checked(sm2_key: SoftwareKey) -> None:
    req = CsrBuilder().subject(parse_name("CN=x")).sign(sm2_key)
    assert verify.verify_csr(req) == sm2_key.public_key()
    other = SoftwareKey.generate("sm2")
    forged = req.copy()
    forged["certification_request_info"]["subject_pk_info"] = other.public_key().asn1()
    with pytest.raises(verify.InvalidSignature, match="proof of possession"):
        verify.verify_csr(parse.load_csr(forged.dump()))
