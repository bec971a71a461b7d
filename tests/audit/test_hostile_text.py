"""Issue 12 finding 10: records accept whatever text callers send (a 129-character request id,
long names and paths, lone surrogates, control characters): bounded, escaped, marked when cut,
and the chain still verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from sscard.audit import AuditLog
from sscard.audit.errors import SecretInAuditRecord
from sscard.audit.records import MAX_DETAILS_BYTES, MAX_TEXT, AuditRecord, bounded_text
from sscard.audit.verify import verify_log


@pytest.fixture()
def log(tmp_path: Path) -> AuditLog:
    return AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}")


def test_bounded_text_escapes_and_marks_cuts() -> None:
    assert bounded_text("a\nb\x00c\x9b", 100) == "a\\x0ab\\x00c\\x9b"
    assert bounded_text("x\udc80y", 100) == "x\\udc80y"
    cut = bounded_text("z" * 1000, 128)
    assert len(cut) == 128 and cut.endswith("…[cut: 1000 characters]")
    assert bounded_text("操作员:张三", 10) == "操作员:张三"


def test_hostile_text_is_recorded_not_refused(log: AuditLog) -> None:
    long_path = "/v1/" + "a" * 5000
    stored = log.append("\udcff" + "n" * 300, "gateway.sign", long_path, "denied",
                        "r" * 129, {"reason": "bad \ud800 key " + "k" * 20_000,
                                    "path\n": "x\r\ny", "items": ["q" * 3000] * 10})
    rec = stored.record
    for name, limit in MAX_TEXT.items():
        assert len(getattr(rec, name)) <= limit, name
    assert rec.actor.startswith("\\udcff") and "[cut:" in rec.actor
    assert rec.object.endswith("…[cut: 5004 characters]")
    assert rec.request_id.endswith("characters]")
    assert len(rec.details_json().encode()) <= MAX_DETAILS_BYTES
    assert "details_cut" in rec.details
    small = log.append("gw", "gateway.sign", "-", "denied", "", {"reason": "bad \ud800 key"})
    assert small.record.details == {"reason": "bad \\ud800 key"}
    report = verify_log(log.engine)
    assert report.intact and report.records == 2, report


def test_secrets_are_still_refused_even_when_details_are_cut() -> None:
    with pytest.raises(SecretInAuditRecord):
        AuditRecord.bounded("t", "a", "b", "", "info", "",
                            {"pin": "1234", "filler": "x" * 20_000}).check()


def test_an_operation_denied_with_a_hostile_reason_is_recorded(log: AuditLog) -> None:
    with log.operation("gw", "gateway.sign", "key:\udc80" + "k" * 1000, "i" * 200) as op:
        op.deny("system may not sign with key '\udc80" + "k" * 10_000 + "'")
    outcomes = [r.record.outcome for r in log.records()]
    assert outcomes == ["attempt", "denied"]
