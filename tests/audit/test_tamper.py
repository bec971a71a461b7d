"""The Must-show tamper tests: each kind of edit, made directly in the database with SQL, is found
and named with the record it concerns; checkpoints verify with the audit certificate."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from sscard.audit.checkpoint import Checkpoint
from sscard.audit.log import AuditLog
from sscard.audit.records import AuditRecord, chain_hash
from sscard.audit.verify import VerifyReport, verify_log
from sscard.crypto.asymmetric import PublicKey
from sscard.keys.software import SoftwareKey
from sscard.x509.parse import load_certificate

N = 20
EVERY = 5  # checkpoints at 5, 10, 15, 20


def cert_key(cert_der: bytes) -> PublicKey:
    cert = load_certificate(cert_der)
    return PublicKey.from_spki(cert["tbs_certificate"]["subject_public_key_info"].dump())


@pytest.fixture
def filled(engine: Engine, audit_key: SoftwareKey, audit_cert: bytes) -> AuditLog:
    log = AuditLog(engine, signer=audit_key, certificate=audit_cert, checkpoint_every=EVERY)
    for i in range(1, N + 1):
        log.append(f"officer:{i % 3}", "cert.issue", f"serial:{i:04x}",
                   "success" if i % 4 else "denied", f"req-{i}", {"profile": "card-sign", "n": i})
    return log


def verify(log: AuditLog, cert: bytes, external: Checkpoint | None = None) -> VerifyReport:
    return verify_log(log.engine, public_key=cert_key(cert), external_checkpoint=external)


def sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def test_untouched_log_verifies_with_the_audit_certificate(filled: AuditLog,
                                                           audit_cert: bytes) -> None:
    report = verify(filled, audit_cert)
    assert report.intact, report.findings
    assert (report.records, report.checkpoints) == (N, N // EVERY)
    assert [cp.tree_size for cp in filled.checkpoints()] == [5, 10, 15, 20]
    assert filled.latest_checkpoint() is not None
    assert filled.latest_checkpoint().certificate == audit_cert  # type: ignore[union-attr]


def test_checkpoint_signed_by_another_key_is_refused(filled: AuditLog, audit_cert: bytes) -> None:
    impostor = SoftwareKey.generate("sm2")
    from tests.audit.conftest import self_signed

    report = verify(filled, self_signed(impostor))
    sig = [f for f in report.findings if "signature does not verify" in f.message]
    assert len(sig) == N // EVERY
    # and a checkpoint row whose signature was altered fails against the real certificate
    sql(filled.engine, "UPDATE audit_checkpoint SET signature = :s WHERE idx = 2",
        s=impostor.sign(filled.checkpoints()[1].body.encode()))
    report = verify(filled, audit_cert)
    assert [str(f) for f in report.findings] == [
        f"checkpoint: checkpoint 2 (size 10, {filled.checkpoints()[1].body.time}): signature "
        "does not verify with the audit certificate"]


def test_modified_record_is_found(filled: AuditLog, audit_cert: bytes) -> None:
    sql(filled.engine, "UPDATE audit_record SET outcome = 'success' WHERE seq = 8")
    report = verify(filled, audit_cert)
    assert [(f.kind, f.seq) for f in report.findings] == [("modified", 8)]
    assert "record 8: its content does not match its hash" in report.findings[0].message


def test_modified_details_are_found(filled: AuditLog, audit_cert: bytes) -> None:
    sql(filled.engine, "UPDATE audit_record SET details = :d WHERE seq = 13",
        d='{"n":13,"profile":"card-encrypt"}')
    assert [(f.kind, f.seq) for f in verify(filled, audit_cert).findings] == [("modified", 13)]
    sql(filled.engine, "UPDATE audit_record SET details = 'not json' WHERE seq = 13")
    findings = verify(filled, audit_cert).findings
    assert [(f.kind, f.seq) for f in findings] == [("modified", 13)]
    assert "cannot be decoded" in findings[0].message


def test_rewritten_chain_is_caught_by_the_signed_checkpoints(filled: AuditLog,
                                                             audit_cert: bytes) -> None:
    """A forger who edits record 12 and recomputes every hash after it: the chain is whole
    again, but the signed tree heads from record 12 on no longer match."""
    rows = list(filled.records())
    edited = AuditRecord(**{**rows[11].record.__dict__, "outcome": "failure"})
    prev = rows[10].hash
    with filled.engine.begin() as conn:
        conn.execute(text("UPDATE audit_record SET outcome = 'failure' WHERE seq = 12"))
        for i, stored in enumerate(rows[11:], start=12):
            rec = edited if i == 12 else stored.record
            h = chain_hash(filled.hash_name, prev, rec.canonical_encoding())
            conn.execute(text("UPDATE audit_record SET prev_hash = :p, hash = :h WHERE seq = :s"),
                         {"p": prev, "h": h, "s": i})
            prev = h
        conn.execute(text("UPDATE audit_head SET last_hash = :h"), {"h": prev})
    report = verify(filled, audit_cert)
    assert report.kinds() == {"checkpoint"}
    assert [f.seq for f in report.findings] == [11, 11]  # checkpoints at 15 and 20
    assert "the difference lies in records 11..15" in report.findings[0].message


def test_deleted_record_is_found(filled: AuditLog, audit_cert: bytes) -> None:
    sql(filled.engine, "DELETE FROM audit_record WHERE seq = 7")
    report = verify(filled, audit_cert)
    deleted = [f for f in report.findings if f.kind == "deleted"]
    assert [(f.seq, f.message.split(":")[0]) for f in deleted] == [(7, "record 7 deleted")]
    # the signed heads from there on no longer match, and the head count is off
    assert {"deleted", "checkpoint", "head"} == report.kinds()


def test_deleted_and_renumbered_record_is_found(filled: AuditLog, audit_cert: bytes) -> None:
    with filled.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_record WHERE seq = 7"))
        conn.execute(text("UPDATE audit_record SET seq = -(seq - 1) WHERE seq > 7"))
        conn.execute(text("UPDATE audit_record SET seq = -seq WHERE seq < 0"))
        conn.execute(text("UPDATE audit_head SET size = size - 1"))
    report = verify(filled, audit_cert)
    deleted = [f for f in report.findings if f.kind == "deleted"]
    assert [f.seq for f in deleted] == [7]
    assert "a record before record 7 was deleted" in deleted[0].message
    assert "truncated" in report.kinds()  # the last checkpoint covers 20 records, 19 remain


def _forge_after(log: AuditLog, after: int) -> AuditRecord:
    prev = log.get(after)
    forged = AuditRecord(prev.record.time, "officer:9", "cert.revoke", "serial:0001",
                         "success", "req-forged", {})
    return forged


def test_inserted_record_is_found(filled: AuditLog, audit_cert: bytes) -> None:
    """A careful forger: the new record chains correctly to record 9, and everything after it
    is renumbered to make room."""
    forged = _forge_after(filled, 9)
    prev = filled.get(9).hash
    h = chain_hash(filled.hash_name, prev, forged.canonical_encoding())
    with filled.engine.begin() as conn:
        conn.execute(text("UPDATE audit_record SET seq = -(seq + 1) WHERE seq >= 10"))
        conn.execute(text("UPDATE audit_record SET seq = -seq WHERE seq < 0"))
        conn.execute(
            text("INSERT INTO audit_record (seq, time, actor, action, object, outcome, "
                 "request_id, details, prev_hash, hash) VALUES (10, :t, :a, :ac, :o, :out, "
                 ":r, '{}', :p, :h)"),
            {"t": forged.time, "a": forged.actor, "ac": forged.action, "o": forged.object,
             "out": forged.outcome, "r": forged.request_id, "p": prev, "h": h})
    report = verify(filled, audit_cert)
    inserted = [f for f in report.findings if f.kind == "inserted"]
    assert [f.seq for f in inserted] == [10]
    assert "record 11 chains directly to record 9" in inserted[0].message
    assert not {"modified", "deleted", "reordered"} & report.kinds()


def test_inserted_record_at_the_end_of_a_gap_is_found(filled: AuditLog,
                                                      audit_cert: bytes) -> None:
    """An insertion that keeps the numbering: a bogus row where record 6 was."""
    with filled.engine.begin() as conn:
        conn.execute(text("UPDATE audit_record SET actor = 'officer:evil', hash = :h "
                          "WHERE seq = 6"), {"h": b"\x01" * 32})
    report = verify(filled, audit_cert)
    assert ("modified", 6) in [(f.kind, f.seq) for f in report.findings]


def test_reordered_records_are_found(filled: AuditLog, audit_cert: bytes) -> None:
    with filled.engine.begin() as conn:
        conn.execute(text("UPDATE audit_record SET seq = -1 WHERE seq = 11"))
        conn.execute(text("UPDATE audit_record SET seq = 11 WHERE seq = 12"))
        conn.execute(text("UPDATE audit_record SET seq = 12 WHERE seq = -1"))
    report = verify(filled, audit_cert)
    reordered = [f for f in report.findings if f.kind == "reordered"]
    assert [f.seq for f in reordered] == [11]
    assert "records 11 and 12 are swapped" in reordered[0].message
    assert not {"modified", "deleted", "inserted"} & report.kinds()


def test_record_moved_far_is_found(filled: AuditLog, audit_cert: bytes) -> None:
    with filled.engine.begin() as conn:  # move record 3 to the end, as 21
        conn.execute(text("UPDATE audit_record SET seq = 21 WHERE seq = 3"))
    report = verify(filled, audit_cert)
    assert ("reordered", 21) in [(f.kind, f.seq) for f in report.findings]
    assert any("written right after record 2" in f.message for f in report.findings)


def test_truncated_tail_is_found_from_the_stored_checkpoint(filled: AuditLog,
                                                            audit_cert: bytes) -> None:
    sql(filled.engine, "DELETE FROM audit_record WHERE seq > 17")
    sql(filled.engine, "UPDATE audit_head SET size = 17, last_hash = "
        "(SELECT hash FROM audit_record WHERE seq = 17)")
    report = verify(filled, audit_cert)
    assert [(f.kind, f.seq) for f in report.findings] == [("truncated", 18)]
    assert "records 18..20 were removed from the tail" in report.findings[0].message


def test_truncated_tail_and_checkpoints_is_found_from_an_external_copy(
        filled: AuditLog, audit_cert: bytes) -> None:
    """The forger also removes the checkpoints that covered the removed records; the copy of the
    latest checkpoint an auditor kept elsewhere still shows the cut."""
    kept = Checkpoint.from_json(filled.latest_checkpoint().to_json())  # type: ignore[union-attr]
    with filled.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_record WHERE seq > 12"))
        conn.execute(text("DELETE FROM audit_checkpoint WHERE tree_size > 12"))
        conn.execute(text("UPDATE audit_head SET size = 12, last_hash = "
                          "(SELECT hash FROM audit_record WHERE seq = 12)"))
    assert verify(filled, audit_cert).intact  # without the external copy, nothing to see
    report = verify(filled, audit_cert, external=kept)
    assert [(f.kind, f.seq) for f in report.findings] == [("truncated", 13)]
    assert "external checkpoint 4 (size 20)" in report.findings[0].message


def test_external_checkpoint_from_another_key_or_log_is_refused(
        filled: AuditLog, audit_cert: bytes, audit_key: SoftwareKey) -> None:
    other = AuditLog.open("sqlite://", signer=audit_key, checkpoint_every=None)
    other.append("x", "y", "z", "info")
    foreign = other.checkpoint()
    report = verify(filled, audit_cert, external=foreign)
    assert [f.kind for f in report.findings] == ["checkpoint"]
    assert "is from another log" in report.findings[0].message


def test_removed_checkpoint_in_the_middle_is_found(filled: AuditLog, audit_cert: bytes) -> None:
    sql(filled.engine, "DELETE FROM audit_checkpoint WHERE idx = 2")
    report = verify(filled, audit_cert)
    assert [f.kind for f in report.findings] == ["checkpoint"]
    assert "expected checkpoint 2 here" in report.findings[0].message


def test_edited_checkpoint_rows_are_found(filled: AuditLog, audit_cert: bytes) -> None:
    sql(filled.engine, "UPDATE audit_checkpoint SET tree_size = 9 WHERE idx = 2")
    report = verify(filled, audit_cert)
    assert [str(f).split(":", 2)[1].strip() for f in report.findings] == ["checkpoint 2"]
    assert "its row does not match its signed body" in report.findings[0].message
    body = filled.checkpoints()[2].body.encode().replace(b"size 15", b"size 14")
    sql(filled.engine, "UPDATE audit_checkpoint SET tree_size = 10 WHERE idx = 2")
    sql(filled.engine, "UPDATE audit_checkpoint SET body = :b, tree_size = 14 WHERE idx = 3",
        b=body)
    messages = [f.message for f in verify(filled, audit_cert).findings]
    assert any("checkpoint 3 (size 14" in m and "signature does not verify" in m
               for m in messages)
    sql(filled.engine, "UPDATE audit_checkpoint SET body = :b WHERE idx = 3", b=b"garbage")
    messages = [f.message for f in verify(filled, audit_cert).findings]
    assert any("checkpoint 3 cannot be read" in m for m in messages)


def test_empty_log_verifies(engine: Engine, audit_key: SoftwareKey, audit_cert: bytes) -> None:
    log = AuditLog(engine, signer=audit_key, certificate=audit_cert)
    assert verify(log, audit_cert).intact
    log.checkpoint()
    report = verify(log, audit_cert)
    assert report.intact and (report.records, report.checkpoints) == (0, 1)


def test_a_log_mangled_wholesale_is_reported_briefly(engine: Engine) -> None:
    import sscard.audit.verify as verify_module

    log = AuditLog(engine, checkpoint_every=None)
    for i in range(30):
        log.append("a", "x", f"o{i}", "info")
    sql(engine, "UPDATE audit_record SET actor = 'b'")
    limit = verify_module.MAX_CHAIN_FINDINGS
    verify_module.MAX_CHAIN_FINDINGS = 10
    try:
        report = verify_log(engine)
    finally:
        verify_module.MAX_CHAIN_FINDINGS = limit
    assert len(report.findings) == 11
    assert report.findings[-1].message == "more anomalies from record 11 on are not listed"
