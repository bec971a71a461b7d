"""The per-card personalisation journal: which steps are done and what they produced, written
atomically (temporary file, fsync, rename) after each step so that a killed run resumes where
it stopped or is rolled back. It holds no secret: never the PIN; the wrapped encryption key in
it is enciphered for the card's own signing key."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IN_PROGRESS, DONE, ROLLED_BACK, WAITING = "in_progress", "done", "rolled_back", "waiting"


@dataclass
class Journal:
    path: Path
    card_id: str
    status: str = IN_PROGRESS
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: out-of-band operations on the card (a forced key replacement), oldest first
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def for_card(cls, directory: Path, card_id: str) -> Journal:
        path = directory / f"{card_id}.json"
        if path.exists():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                return cls(path, str(doc["card_id"]), str(doc["status"]),
                           dict(doc.get("steps", {})), list(doc.get("events", [])))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"journal {path} is damaged ({exc}); move it aside and roll "
                                 "the card back by hand") from None
        return cls(path, card_id)

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def done(self, step: str) -> bool:
        return step in self.steps

    def get(self, step: str) -> dict[str, Any]:
        return self.steps.get(step, {})

    def record(self, step: str, **data: Any) -> None:
        self.steps[step] = data
        self.save()

    def log_event(self, event: str, **data: Any) -> None:
        """Append an event (with the time) and save: written before the operation it records."""
        self.events.append({"event": event, "at": dt.datetime.now(dt.UTC).isoformat(), **data})
        self.save()

    def set_status(self, status: str) -> None:
        self.status = status
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {"card_id": self.card_id, "status": self.status,
                               "steps": self.steps}
        if self.events:
            doc["events"] = self.events
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".journal-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
