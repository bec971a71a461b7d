"""The value types that cross package lines: one serial parser and printer, one spelling of
revocation reasons (sscard.x509.values), as the CA, KMC, RA and openssl see them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from asn1crypto import crl

from keymgmt.errors import KmcError
from keymgmt.service import serial_hex
from sscard.x509.values import RevocationReason, Serial


@pytest.mark.parametrize("text", [
    "serial=0A1B2C", "0A1B2C", "0a1b2c", "0x0A1B2C", "0X0a1b2c", "0a:1b:2c", "  A1B2C\n",
    "serial=0A:1B:2C", "662316 (0xa1b2c)",
])
def test_serial_accepts_what_openssl_prints(text: str) -> None:
    serial = Serial.parse(text)
    assert serial == 0xA1B2C and serial.hex == "0A1B2C" and str(serial) == "0A1B2C"


@pytest.mark.parametrize(("text", "why"), [
    ("", "not hexadecimal"), ("xyz", "not hexadecimal"), ("0x", "not hexadecimal"),
    ("12 34", "not hexadecimal"), ("-1", "not hexadecimal"), ("00", "must be positive"),
    ("1" * 41, "longer than 20 octets"), ("4660 (0x1235)", "differ"),
])
def test_serial_refuses_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Serial.parse(text)


def test_serial_is_an_int_everywhere() -> None:
    serial = Serial.parse("serial=00FF")
    assert serial == 255 and isinstance(serial, int) and f"{serial:x}" == "ff"
    assert Serial(2**159).hex == "80" + "00" * 19
    with pytest.raises(TypeError):
        Serial("FF")  # type: ignore[arg-type]  # text goes through parse


def test_openssl_printed_serial_parses(tmp_path: Path) -> None:
    """Round trip through openssl itself: what it prints is what we read."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-subj", "/CN=t", "-set_serial", "0x00C0FFEE15600D", "-days", "1"],
                   check=True, capture_output=True, timeout=60)
    printed = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-serial"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
    serial = Serial.parse(printed)
    assert serial == 0xC0FFEE15600D and f"serial={serial}" == printed.strip()


def test_kmc_and_ra_use_the_one_parser() -> None:
    assert serial_hex("serial=0a:1b") == "0A1B" and serial_hex(0xA1B) == "0A1B"
    with pytest.raises(KmcError, match="not hexadecimal"):
        serial_hex("zz")
    from ra.errors import BadRequest
    from ra.service import RegistrationAuthority

    assert RegistrationAuthority._serial_hex("serial=0a:1b") == "0A1B"
    with pytest.raises(BadRequest, match="not hexadecimal"):
        RegistrationAuthority._serial_hex("zz")


@pytest.mark.parametrize("spelling", ["keyCompromise", "key_compromise", "KEY-COMPROMISE", 1,
                                      RevocationReason.keyCompromise])
def test_revocation_reason_one_spelling_out_old_ones_in(spelling: str | int) -> None:
    reason = RevocationReason.parse(spelling)
    assert reason is RevocationReason.keyCompromise and reason.name == "keyCompromise"


def test_revocation_reason_maps_every_asn1_name() -> None:
    for reason in RevocationReason:
        assert crl.CRLReason(reason.asn1_name).native == reason.asn1_name
        assert RevocationReason.from_asn1(reason.asn1_name) is reason
    assert RevocationReason.from_asn1("ca_compromise") is RevocationReason.cACompromise


@pytest.mark.parametrize("bad", ["compromised", 7, 11, None, True])
def test_revocation_reason_refuses_unknown(bad: object) -> None:
    with pytest.raises(ValueError, match="reason"):
        RevocationReason.parse(bad)  # type: ignore[arg-type]


def test_the_ca_status_column_takes_only_status_values(tmp_path: Path) -> None:
    """An enum column instead of a string literal: 'lost' never reaches the database."""
    import datetime as dt

    import sqlalchemy as sa

    from ca.records import Status
    from ca.storage import Base, CARecord, CertificateRecord, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'ca.db'}")
    Base.metadata.create_all(engine)
    now = dt.datetime.now(dt.UTC)
    row = {"issuer_id": 1, "serial": "01", "profile": "p", "subject": "s", "not_before": now,
           "not_after": now, "issued_at": now, "der": b"x"}
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(CARecord).values(
                id=1, name="ca", role="issuing", subject="s", state="active", key_spec="{}",
                created_at=now))
            conn.execute(sa.insert(CertificateRecord).values(**row, status=Status.GOOD))
        with pytest.raises(sa.exc.StatementError, match="lost"), engine.begin() as conn:
            conn.execute(sa.insert(CertificateRecord).values(**{**row, "serial": "02"},
                                                             status="lost"))
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT serial, status FROM certificates").all()
            back = conn.execute(sa.select(CertificateRecord.status)).scalar_one()
        assert stored == [("01", "good")] and back is Status.GOOD
    finally:
        engine.dispose()


def test_the_kmc_recovery_status_column_takes_only_its_values(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from keymgmt.db import RecoveryRequestRecord, RecoveryStatus

    column = RecoveryRequestRecord.__table__.c.status
    processor = column.type.bind_processor(sa.create_engine("sqlite://").dialect)
    assert processor is not None and processor(RecoveryStatus.APPROVED) == "approved"
    with pytest.raises(LookupError, match="released"):
        processor("released")
