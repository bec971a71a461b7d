"""The KMC writes its security operations to the project's tamper-evident audit log
(sscard.audit): attempt first, then success / denied / failure; no record, no operation."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from keymgmt.cardkeys import CardKeyService
from keymgmt.errors import ApprovalError
from keymgmt.service import KeyManagementCentre, KmcConfig, OfficerRecipient
from keymgmt.storage import SoftwareStorageKey
from sscard.audit import AuditLog, AuditUnavailable, make_engine, verify_log
from sscard.crypto.sm2 import SM2PrivateKey
from sscard.keys.software import SoftwareKey
from tests.kmc.kmc_helpers import principals


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[tuple[KeyManagementCentre, AuditLog]]:
    audit = AuditLog(make_engine(f"sqlite:///{tmp_path / 'audit.db'}"),
                     signer=SoftwareKey.generate("sm2"), checkpoint_every=5)
    kmc = KeyManagementCentre.open(f"sqlite:///{tmp_path / 'kmc.db'}",
                                   SoftwareStorageKey(secrets.token_bytes(32), "sk-a"),
                                   KmcConfig(), audit=audit)
    yield kmc, audit
    kmc.close()


def test_recovery_is_in_the_audit_log(audited: tuple[KeyManagementCentre, AuditLog]) -> None:
    kmc, audit = audited
    who = principals(kmc)
    res = kmc.escrow(who["ca"], "owner-1", SM2PrivateKey.generate().public_key().spki_der())
    rid = kmc.request_recovery(who["o1"], key_id=res.key_id, reason="r",
                               recipient=OfficerRecipient("o4"))["request_id"]
    with pytest.raises(ApprovalError):
        kmc.approve(who["o1"], rid)
    kmc.approve(who["o2"], rid)
    kmc.approve(who["o3"], rid)
    out = kmc.complete_recovery(who["o4"], rid)
    CardKeyService(kmc).generate_master_keys("63", ["sm4"])

    records = [(r.record.actor, r.record.action, r.record.outcome) for r in audit.records()]
    # the callers principals() registered come first, each recorded by the KMC itself
    added = [(a, o) for _, a, o in records if a == "kmc.caller.add"]
    assert added == [("kmc.caller.add", "attempt"), ("kmc.caller.add", "success")] * len(who)
    assert records[len(added):] == [
        ("ca", "kmc.escrow.generate", "attempt"), ("ca", "kmc.escrow.generate", "success"),
        ("o1", "kmc.recovery.request", "attempt"), ("o1", "kmc.recovery.request", "success"),
        ("o1", "kmc.recovery.approve", "attempt"), ("o1", "kmc.recovery.approve", "denied"),
        ("o2", "kmc.recovery.approve", "attempt"), ("o2", "kmc.recovery.approve", "success"),
        ("o3", "kmc.recovery.approve", "attempt"), ("o3", "kmc.recovery.approve", "success"),
        ("o4", "kmc.recovery.complete", "attempt"), ("o4", "kmc.recovery.complete", "success"),
        ("administrator", "kmc.cardkey.generate", "attempt"),
        ("administrator", "kmc.cardkey.generate", "success"),
    ]
    denied = next(r for r in audit.records() if r.record.outcome == "denied")
    assert "dual control" in denied.record.details["reason"]
    report = verify_log(audit.engine)
    assert report.intact and report.records == len(records) and report.checkpoints >= 1
    # nothing secret went into the audit log
    assert out.pkcs12_passphrase is not None
    blob = b"".join(str(r.record).encode() for r in audit.records())
    assert out.pkcs12_passphrase.encode() not in blob


def test_no_audit_record_no_key_release(audited: tuple[KeyManagementCentre, AuditLog]) -> None:
    kmc, audit = audited
    who = principals(kmc)
    res = kmc.escrow(who["ca"], "owner-2", SM2PrivateKey.generate().public_key().spki_der())
    rid = kmc.request_recovery(who["o1"], key_id=res.key_id, reason="r",
                               recipient=OfficerRecipient("o4"))["request_id"]
    kmc.approve(who["o2"], rid)
    kmc.approve(who["o3"], rid)
    with audit.engine.begin() as conn:  # the audit database loses its head: unusable
        conn.execute(text("DROP TABLE audit_head"))
    with pytest.raises(AuditUnavailable):
        kmc.complete_recovery(who["o4"], rid)
    assert kmc.recovery_status(who["o1"], rid)["status"] == "approved"  # nothing released
