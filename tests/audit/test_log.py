"""The log API: checkpoints (periodic, by time, on demand), proofs against signed checkpoints,
the hash choice, and the operation guard that refuses to act without an audit record."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from sscard.audit import merkle, storage
from sscard.audit.errors import (
    AuditLogUnusable,
    AuditOutcomeNotRecorded,
    AuditUnavailable,
    CheckpointError,
    ProofError,
    SecretInAuditRecord,
)
from sscard.audit.log import AuditLog
from sscard.audit.verify import verify_log
from sscard.keys.software import SoftwareKey


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(storage.record_table)
        return int(conn.execute(query).scalar_one())


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_checkpoints_every_n_by_time_and_on_demand(engine: Engine,
                                                   audit_key: SoftwareKey) -> None:
    clock = Clock()
    log = AuditLog(engine, signer=audit_key, checkpoint_every=4, checkpoint_interval=60,
                   clock=clock)
    log.append("a", "x", "o", "info")  # the first record: no checkpoint yet, so one is due
    assert [cp.tree_size for cp in log.checkpoints()] == [1]
    for _ in range(3):
        log.append("a", "x", "o", "info")
    assert [cp.tree_size for cp in log.checkpoints()] == [1]  # 3 since, 0 s passed
    assert log.checkpoint_if_due() is None
    clock.now += dt.timedelta(seconds=61)
    assert log.checkpoint_if_due() is not None  # a service timer after T seconds
    for _ in range(4):
        log.append("a", "x", "o", "info")
    assert [cp.tree_size for cp in log.checkpoints()] == [1, 4, 8]  # every 4 records
    on_demand = log.checkpoint()
    assert (on_demand.index, on_demand.tree_size) == (4, 8)
    assert on_demand.body.prev == log.checkpoints()[2].body.digest()
    assert on_demand.body.time == "2026-11-28T09:01:01.000000Z"
    assert verify_log(engine, public_key=audit_key.public_key()).intact


def test_inclusion_and_consistency_proofs_against_signed_checkpoints(
        engine: Engine, audit_key: SoftwareKey) -> None:
    log = AuditLog(engine, signer=audit_key, checkpoint_every=6)
    for i in range(20):
        log.append("officer:1", "ra.approve", f"request:{i}", "success", f"r{i}")
    cps = log.checkpoints()
    assert [cp.tree_size for cp in cps] == [6, 12, 18]
    assert all(cp.verify(audit_key.public_key()) for cp in cps)
    for seq in (1, 6, 7, 18):
        proof = log.inclusion_proof(seq)  # against the latest checkpoint, size 18
        assert proof.tree_size == 18
        assert proof.verify(cps[-1].root)
        assert not proof.verify(cps[0].root)
        forged = type(proof)(proof.hash_name, seq, 18, log.get(seq % 18 + 1).hash, proof.path)
        assert not forged.verify(cps[-1].root)
    with pytest.raises(ProofError, match="record 19 is not in a tree of 18"):
        log.inclusion_proof(19, 18)
    for old, new in ((cps[0], cps[1]), (cps[0], cps[2]), (cps[1], cps[2])):
        proof = log.consistency_proof(old.tree_size, new.tree_size)
        assert merkle.verify_consistency(log.hash_name, old.tree_size, new.tree_size, proof,
                                         old.root, new.root)
        assert not merkle.verify_consistency(log.hash_name, old.tree_size, new.tree_size,
                                             proof, new.root, old.root)
    assert log.root() == merkle.root(log.hash_name, log.leaf_hashes(20))


def test_sha256_is_selectable_and_fixed_at_creation(engine: Engine,
                                                    audit_key: SoftwareKey) -> None:
    log = AuditLog(engine, signer=audit_key, hash_name="sha256", checkpoint_every=2)
    for _ in range(3):
        log.append("a", "x", "o", "info")
    assert log.checkpoints()[0].body.hash_name == "sha256"
    assert len(log.get(1).hash) == 32
    report = verify_log(engine, public_key=audit_key.public_key())
    assert report.intact and report.hash_name == "sha256"
    with pytest.raises(AuditLogUnusable, match="created with sha256, not sm3"):
        AuditLog(engine, hash_name="sm3")
    with pytest.raises(ValueError, match="must be one of sm3, sha256"):
        AuditLog(engine, hash_name="md5")


def test_checkpoint_needs_a_key_and_a_matching_certificate(engine: Engine,
                                                           audit_key: SoftwareKey,
                                                           audit_cert: bytes) -> None:
    log = AuditLog(engine)
    log.append("a", "x", "o", "info")
    with pytest.raises(CheckpointError, match="no audit signing key"):
        log.checkpoint()
    with pytest.raises(ValueError, match="does not certify the audit signing key"):
        AuditLog(engine, signer=SoftwareKey.generate("sm2"), certificate=audit_cert)


def test_operation_records_attempt_and_outcome(engine: Engine) -> None:
    log = AuditLog(engine)
    with log.operation("officer:7", "cert.revoke", "serial:1f", "req-1", {"reason": "lost"}) as op:
        assert count(engine) == 1  # the attempt is on disk before the action runs
        op.set(crl_number=12)
    with log.operation("officer:7", "key.recover", "card:9", "req-2") as op:
        op.deny("second officer did not approve")
    with pytest.raises(RuntimeError, match="HSM gone"), \
            log.operation("ca", "cert.issue", "csr:3", "req-3"):
        raise RuntimeError("HSM gone")
    recs = list(log.records())
    assert [(r.record.outcome, r.record.request_id) for r in recs] == [
        ("attempt", "req-1"), ("success", "req-1"), ("attempt", "req-2"), ("denied", "req-2"),
        ("attempt", "req-3"), ("failure", "req-3")]
    assert dict(recs[1].record.details) == {"attempt_seq": 1, "crl_number": 12}
    assert dict(recs[3].record.details) == {"attempt_seq": 3,
                                            "reason": "second officer did not approve"}
    assert dict(recs[5].record.details) == {"attempt_seq": 5, "error": "RuntimeError"}
    assert verify_log(engine).notes[-1].startswith("checkpoint signatures")  # no open attempts


def test_secret_in_an_operation_is_refused_and_never_stored(engine: Engine) -> None:
    log = AuditLog(engine)
    with pytest.raises(SecretInAuditRecord, match=r"details\.pin"):
        log.append("card", "pin.verify", "card:1", "attempt", details={"pin": "123456"})
    assert count(engine) == 0
    with pytest.raises(SecretInAuditRecord), log.operation("card", "pin.change", "card:1") as op:
        op.set(new_pin="654321")
    with engine.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(text("SELECT * FROM audit_record"))
                        for v in row)
    assert "654321" not in dump and "SecretInAuditRecord" in dump


def test_guard_refuses_when_the_database_is_read_only(engine: Engine, db_url: str) -> None:
    AuditLog(engine).append("a", "setup", "o", "info")
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        ro = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    else:
        ro = create_engine(db_url, connect_args={"options": "-c default_transaction_read_only=on"})
    log = AuditLog(ro)
    ran = []
    with pytest.raises(AuditUnavailable, match=r"audit record could not be written: .*read"), \
            log.operation("officer:1", "cert.revoke", "serial:2"):
        ran.append(True)
    assert ran == []
    assert count(engine) == 1
    ro.dispose()


def test_guard_refuses_when_the_database_is_unreachable() -> None:
    from tests.pg import free_port

    engine = create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
                           connect_args={"connect_timeout": 2})
    with pytest.raises(AuditUnavailable, match="audit log cannot be opened"):
        AuditLog(engine)


def test_guard_refuses_while_another_writer_holds_the_lock_and_reports_a_lost_outcome(
        tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "locked.sqlite"
    log = AuditLog(create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.2}))
    log.append("a", "setup", "o", "info")
    blocker = create_engine(f"sqlite:///{path}").connect()
    blocker.exec_driver_sql("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(AuditUnavailable, match="database is locked"), \
                log.operation("officer:1", "cert.issue", "csr:1"):
            pytest.fail("the operation ran without its audit record")
    finally:
        blocker.rollback()
    with pytest.raises(AuditOutcomeNotRecorded, match=r"ran \(attempt is record 2\)"), \
            log.operation("officer:1", "cert.issue", "csr:2"):
        blocker.exec_driver_sql("BEGIN EXCLUSIVE")  # the database goes away mid-operation
    blocker.rollback()
    blocker.close()
    assert [r.record.outcome for r in log.records()] == ["info", "attempt"]
    assert verify_log(log.engine).notes[0] == "1 attempt(s) without an outcome record: 2"
