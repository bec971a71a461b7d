"""Recording gateway calls: who called, which operation, on what (a key id, a certificate
serial, a size), the outcome; never document content."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol


class OperationRecord(Protocol):
    def set(self, **details: Any) -> None: ...

    def deny(self, reason: str) -> None: ...

    def fail(self, reason: str) -> None: ...


class Recorder(Protocol):
    """What the gateway needs of an audit log (``sscard.audit.AuditLog`` fits)."""

    def operation(self, actor: str, action: str, obj: str, request_id: str = "",
                  details: Any = None) -> contextlib.AbstractContextManager[Any]: ...


class _Detail:
    def __init__(self) -> None:
        self.details: dict[str, Any] = {}
        self.outcome = "success"

    def set(self, **details: Any) -> None:
        self.details.update(details)

    def deny(self, reason: str) -> None:
        self.details["reason"] = reason
        self.outcome = "denied"

    def fail(self, reason: str) -> None:
        self.details["reason"] = reason
        self.outcome = "failure"


class MemoryRecorder:
    """Keeps the latest records in memory: for tests and a gateway run without an audit
    database (``audit_url``); nothing survives a restart."""

    def __init__(self, keep: int = 100_000) -> None:
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)

    @contextlib.contextmanager
    def operation(self, actor: str, action: str, obj: str, request_id: str = "",
                  details: Any = None) -> Iterator[_Detail]:
        op = _Detail()
        op.details.update(details or {})
        try:
            yield op
        except BaseException as exc:
            self.records.append({"actor": actor, "action": action, "object": obj,
                                 "request_id": request_id, "outcome": "failure",
                                 "details": {**op.details, "error": type(exc).__name__}})
            raise
        self.records.append({"actor": actor, "action": action, "object": obj,
                             "request_id": request_id, "outcome": op.outcome,
                             "details": dict(op.details)})
