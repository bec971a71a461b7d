"""Issue 12 finding 10 at the gateway: hostile text (a 129-character X-Request-Id, a lone
surrogate in a key id, long values) is recorded, not turned into a 503; and each answer says
truthfully whether the operation ran."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

from sscard import httpsig as rs
from sscard.audit import AuditLog
from sscard.audit.errors import AuditUnavailable
from sscard.gateway.service import create_app
from tests.gateway.conftest import Rig

DOC = base64.b64encode(b"doc").decode()


def _post(rig: Rig, client: Any, path: str, body: bytes, request_id: str,
          who: str = "employment") -> Any:
    s = rig.systems[who]
    headers = {"Content-Type": "application/json", "X-Request-Id": request_id,
               **rs.sign_request(s.key, s.cert, "POST", path, "", body)}
    return client.post(path, data=body, headers=headers)


def test_hostile_request_ids_and_key_ids_are_recorded(rig: Rig, tmp_path: Path) -> None:
    log = AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}")
    client = create_app(rig.config, recorder=log).test_client()
    long_id = "r" * 129
    # a key id with control characters that the system may not use: 403, recorded escaped
    body = json.dumps({"key": "k\n2026-12-06 gateway.sign success\x00" + "k" * 80,
                       "content": DOC}).encode()
    answer = _post(rig, client, "/v1/sign", body, long_id)
    assert answer.status_code == 403, answer.json
    assert answer.json["code"] == "FORBIDDEN"
    # a lone surrogate (a valid JSON escape, not Unicode): 400 naming it, and recorded
    body = b'{"key": "\\udc80", "content": "' + DOC.encode() + b'"}'
    answer = _post(rig, client, "/v1/sign", body, long_id)
    assert answer.status_code == 400 and "lone surrogate" in answer.json["detail"]
    # and the operation itself, with the long request id, runs and is recorded
    ok = _post(rig, client, "/v1/sign", json.dumps({"key": "hr-sign", "content": DOC}).encode(),
               long_id)
    assert ok.status_code == 200, ok.json
    records = [r.record for r in log.records()]
    assert [r.outcome for r in records] == ["attempt", "denied", "attempt", "denied",
                                            "attempt", "success"]
    assert all(r.request_id.startswith("r" * 64) and "cut" in r.request_id for r in records)
    assert records[1].object.startswith("key:k\\x0a2026") and "\\x00" in records[1].object
    assert "lone surrogate" in records[3].details["reason"]


class _RefusingAudit:
    """An audit log that takes nothing."""

    def operation(self, *args: object, **kwargs: object) -> object:
        raise AuditUnavailable("audit record could not be written: disk full")


def test_a_refusal_the_log_cannot_take_is_still_the_answer(rig: Rig) -> None:
    client = create_app(rig.config, recorder=_RefusingAudit()).test_client()  # type: ignore
    body = json.dumps({"key": "hr-sign", "content": DOC}).encode()
    # 'fund' may not sign: the caller hears the refusal, not "the operation ran"
    answer = _post(rig, client, "/v1/sign", body, "r1", who="fund")
    assert answer.status_code == 403 and answer.json["code"] == "FORBIDDEN"
    # and an unauthenticated call hears that it is not authenticated
    assert client.post("/v1/sign", data=body, headers={
        "Content-Type": "application/json"}).status_code == 401
    body = json.dumps({"key": "hr-sign", "content": DOC}).encode()
    answer = _post(rig, client, "/v1/sign", body, "r2")
    assert answer.status_code == 503 and "nothing was done" in answer.json["detail"]


def test_an_outcome_not_recorded_is_said_to_have_run(rig: Rig, tmp_path: Path) -> None:
    log = AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}")
    appended = log.append

    def append_attempts_only(*args: Any, **kwargs: Any) -> Any:
        if args[3] != "attempt":
            raise AuditUnavailable("audit record could not be written: disk full")
        return appended(*args, **kwargs)

    log.append = append_attempts_only  # type: ignore[method-assign]
    client = create_app(dataclasses.replace(rig.config), recorder=log).test_client()
    answer = _post(rig, client, "/v1/sign",
                   json.dumps({"key": "hr-sign", "content": DOC}).encode(), "r3")
    assert answer.status_code == 500
    assert answer.json["code"] == "OUTCOME_NOT_RECORDED"
    assert "ran" in answer.json["detail"]


def test_a_failure_whose_outcome_is_not_recorded_is_still_the_failure(rig: Rig,
                                                                     tmp_path: Path) -> None:
    log = AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}")
    appended = log.append

    def append_attempts_only(*args: Any, **kwargs: Any) -> Any:
        if args[3] != "attempt":
            raise AuditUnavailable("audit record could not be written: disk full")
        return appended(*args, **kwargs)

    log.append = append_attempts_only  # type: ignore[method-assign]
    client = create_app(rig.config, recorder=log).test_client()
    # a key the system may not use: refused inside the operation, nothing signed
    answer = _post(rig, client, "/v1/sign",
                   json.dumps({"key": "not-ours", "content": DOC}).encode(), "r4")
    assert answer.status_code == 403 and answer.json["code"] == "FORBIDDEN"
