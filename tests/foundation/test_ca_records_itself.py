"""The CA as a library (no HTTP, no CLI) records its own operations, and reads the time from
the clock it is given: a test moves a fake clock instead of sleeping."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from ca.authority import CertificateAuthority, IssueRequest, initialise
from ca.errors import ProfileError
from sscard.audit import AuditLog
from sscard.audit.verify import verify_log
from sscard.keys.software import SoftwareKey
from tests.ca.conftest import HOLDER, write_config

PASS = b"clock and audit test passphrase"


class FakeClock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[CertificateAuthority, AuditLog, FakeClock]]:
    home = tmp_path / "home"
    audit = AuditLog.at_home(tmp_path / "audit")
    initialise(home, write_config(tmp_path / "ca.toml", "ec-p256"), PASS, audit=audit,
               actor="ceremony-admin")
    clock = FakeClock(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC))
    ca = CertificateAuthority.open(home, PASS, audit=audit, actor="batch-job", clock=clock)
    yield ca, audit, clock
    ca.close()
    audit.engine.dispose()


def test_the_ca_reads_the_injected_clock(
        setup: tuple[CertificateAuthority, AuditLog, FakeClock]) -> None:
    ca, _, clock = setup
    key = SoftwareKey.generate("ec-p256")
    issued = ca.issue_for_public_key(key.public_key(), HOLDER, "cardholder-sign")
    validity = issued.certificate["tbs_certificate"]["validity"]
    assert validity["not_before"].native <= clock.now
    clock.advance(days=3)
    status = ca.revoke(issued.serial, "superseded")
    assert status.revocation_time == clock.now
    crl = ca.build_crl()
    assert crl["tbs_cert_list"]["this_update"].native == clock.now
    clock.advance(hours=1)  # a fresh CRL is not due an hour later ...
    assert len(ca.refresh_crls()) == 1  # (only the delta, which had never been built)
    clock.advance(days=30)  # ... but is a month later
    assert len(ca.refresh_crls()) == 2


def test_library_calls_are_recorded_with_their_actor(
        setup: tuple[CertificateAuthority, AuditLog, FakeClock]) -> None:
    ca, audit, _ = setup
    key = SoftwareKey.generate("ec-p256")
    issued = ca.issue_for_public_key(key.public_key(), HOLDER, "cardholder-sign",
                                     actor="ra-service")
    with pytest.raises(ProfileError):
        ca.issue_for_public_key(key.public_key(), HOLDER, "no-such-profile")
    ca.revoke(issued.serial, "keyCompromise")
    ca.build_crl_der()
    rows = [(r.record.actor, r.record.action, r.record.outcome) for r in audit.records()]
    assert rows == [
        ("ceremony-admin", "ca.hierarchy.init", "attempt"),
        ("ceremony-admin", "ca.hierarchy.init", "success"),
        ("ra-service", "ca.certificate.issue", "attempt"),
        ("ra-service", "ca.certificate.issue", "success"),
        ("batch-job", "ca.certificate.issue", "attempt"),
        ("batch-job", "ca.certificate.issue", "denied"),
        ("batch-job", "ca.certificate.revoke", "attempt"),
        ("batch-job", "ca.certificate.revoke", "success"),
        ("batch-job", "ca.crl.issue", "attempt"),
        ("batch-job", "ca.crl.issue", "success"),
    ]
    assert audit.get(4).record.details["serials"] == [issued.serial_hex]
    assert "no-such-profile" in audit.get(6).record.details["reason"]
    assert verify_log(audit.engine).intact


def test_a_large_batch_names_every_serial(
        setup: tuple[CertificateAuthority, AuditLog, FakeClock]) -> None:
    ca, audit, _ = setup
    before = audit.size()
    key = SoftwareKey.generate("ec-p256").public_key()
    count = 250  # more serials (42 bytes each in JSON) than one record's 8 KiB of details hold
    issued = ca.issue_batch([IssueRequest(public_key=key, subject=HOLDER)] * count,
                            "cardholder-sign", chunk_size=100)
    named = [s for r in audit.records(before + 1) for s in r.record.details.get("serials", [])]
    assert sorted(named) == sorted(i.serial_hex for i in issued) and len(named) == count
    outcome = [r for r in audit.records(before + 1) if r.record.outcome == "success"]
    assert len(outcome) == 1 and outcome[0].record.details["count"] == count
    info = [r for r in audit.records(before + 1) if r.record.outcome == "info"]
    assert info and all(r.record.details["attempt_seq"] == outcome[0].record.details[
        "attempt_seq"] for r in info)
