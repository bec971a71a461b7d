"""The ceremony log: an append-only, hash-chained JSON-lines file of every ceremony step.

Each line is ``{"seq", "time", "event", "details", "prev", "hash"}`` where ``hash`` is SHA-256
over the canonical JSON of the other fields, and ``prev`` is the previous line's hash; so a line
removed, reordered or edited breaks :func:`verify`. Details name people, files and key ids,
never secret values. (The project's tamper-evident audit log, ``sscard.audit``, is being written
separately; this file is the ceremony's own record and can be imported into it.)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keymgmt.errors import CeremonyError

GENESIS = "0" * 64


def _digest(entry: dict[str, Any]) -> str:
    body = {k: entry[k] for k in ("seq", "time", "event", "details", "prev")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise CeremonyError(f"ceremony log {path}: line {n} is not JSON") from None
    return entries


def verify(path: Path) -> int:
    """Check the chain; return the number of entries or raise CeremonyError naming the line."""
    prev = GENESIS
    entries = read(path)
    for n, e in enumerate(entries, 1):
        if e.get("seq") != n or e.get("prev") != prev or e.get("hash") != _digest(e):
            raise CeremonyError(f"ceremony log {path}: chain broken at line {n}")
        prev = e["hash"]
    return len(entries)


def append(path: Path, event: str, **details: Any) -> dict[str, Any]:
    """Append one entry (after checking the existing chain) and fsync it. An exclusive lock
    on the file makes read-check-append one step: served KMC and RA workers unseal at the same
    moment after gunicorn forks them, and two appends of the same ``seq`` would fork the
    chain."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        count = verify(path)
        entries = read(path) if count else []
        entry: dict[str, Any] = {
            "seq": count + 1,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "event": event,
            "details": details,
            "prev": entries[-1]["hash"] if entries else GENESIS,
        }
        entry["hash"] = _digest(entry)
        fh.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return entry
