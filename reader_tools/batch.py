"""Batch issuance: personalise many emulated cards (one state file each) from a CSV file.

Each row is one card; its personalisation is journaled like a single card's, so a batch that
was interrupted runs again from the top: finished cards are recognised (and reported again as
done) without being touched, the interrupted one resumes, the rest follow. The per-card report
(CSV or JSON, by the file's suffix) is rewritten atomically after every card."""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from reader_tools.issuance_client import IssuanceBackend, IssuanceError
from reader_tools.personalize import (
    AwaitingApproval,
    CardOrder,
    PersonalisationError,
    Personalizer,
)
from sscard.card.auth import PsamAuthenticator
from sscard.card.client import CardClient
from sscard.card.errors import CardError
from sscard.card.records import HolderData
from sscard.card.transport import InProcessTransport
from sscard.card.validation import CardDataError

COLUMNS = ("ssn", "name", "sex", "ethnicity", "birthplace", "birth_date", "card_number")
REPORT_FIELDS = ("row", "card_number", "ssn", "state_file", "status", "request_id",
                 "sign_serial", "enc_serial", "seconds", "error")


class BatchFileError(ValueError):
    """The CSV file itself is unusable; the message names the line and the field."""


@dataclass(frozen=True)
class BatchRow:
    line: int
    order: CardOrder


@dataclass
class CardResult:
    row: int
    card_number: str
    ssn: str
    state_file: str
    status: str  # done | waiting | failed
    request_id: str = ""
    sign_serial: str = ""
    enc_serial: str = ""
    seconds: float = 0.0
    error: str = ""


def read_rows(path: Path, batch: str | None) -> list[BatchRow]:
    """Parse and validate the whole file first: one bad line stops the batch before any card
    is touched."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise BatchFileError(f"{path}: missing column(s) {', '.join(missing)} "
                                     f"(need {', '.join(COLUMNS)})")
            rows, seen = [], set()
            for record in reader:
                line = reader.line_num
                values = {k: (record.get(k) or "").strip() for k in COLUMNS}
                holder = HolderData(**{k: values[k] for k in COLUMNS[:-1]})
                try:
                    holder.validate()
                except CardDataError as exc:
                    raise BatchFileError(f"{path} line {line}: {exc}") from None
                number = values["card_number"]
                if number in seen:
                    raise BatchFileError(f"{path} line {line}: card number {number} appears "
                                         "twice")
                seen.add(number)
                rows.append(BatchRow(line, CardOrder(holder, number, batch=batch)))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BatchFileError(f"{path}: {exc}") from None
    if not rows:
        raise BatchFileError(f"{path} holds no cards")
    return rows


def state_file(cards_dir: Path, card_number: str) -> Path:
    return cards_dir / f"{card_number}.card.json"


def _blank(path: Path, region: str) -> None:
    from sscard.emulator.sample import CardProfile, blank_card

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        blank_card(CardProfile(generation=3, region_code=region)).save(path)


def _open(path: Path, region: str) -> Iterator[tuple[CardClient, PsamAuthenticator]]:
    """The emulated card in an in-process reader, with an emulated PSAM of its region (the
    test keys: emulated cards are diversified from them)."""
    from sscard.emulator.card import CardState, EmulatedCard
    from sscard.emulator.psam import EmulatedPsam, make_test_psam

    card = EmulatedCard(CardState.load(path), path)
    psam = InProcessTransport(EmulatedPsam(make_test_psam(region)), "psam")
    psam.connect()
    client = CardClient(InProcessTransport(card, path.name))
    client.connect()
    try:
        yield client, PsamAuthenticator(psam)
    finally:
        client.close()
        psam.disconnect()


def write_report(path: Path, results: Iterable[CardResult]) -> None:
    rows = [asdict(r) for r in results]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".json":
            json.dump(rows, f, ensure_ascii=False, indent=1)
        else:
            writer = csv.DictWriter(f, fieldnames=REPORT_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    os.replace(tmp, path)


def run_batch(rows: list[BatchRow], cards_dir: Path, journal_dir: Path,
              backend: IssuanceBackend, pin: str, report: Path, region: str = "639900",
              on_card: Callable[[CardResult], None] | None = None,
              on_step: Callable[[str], None] | None = None) -> list[CardResult]:
    """Personalise every row's card; a card that fails is reported and the batch goes on."""
    import contextlib

    results: list[CardResult] = []
    for row in rows:
        path = state_file(cards_dir, row.order.card_number)
        result = CardResult(row.line, row.order.card_number, row.order.holder.ssn, str(path),
                            "failed")
        started = time.perf_counter()
        try:
            _blank(path, region)
            with contextlib.contextmanager(_open)(path, region) as (client, psam):
                outcome = Personalizer(client, psam, backend, journal_dir,
                                       on_step).personalise(row.order, pin)
            result.status = outcome.status
            result.request_id = outcome.request_id
            result.sign_serial = outcome.sign_serial or ""
            result.enc_serial = outcome.enc_serial or ""
        except AwaitingApproval as exc:
            result.status, result.error = "waiting", str(exc)
        except (PersonalisationError, IssuanceError, CardError, CardDataError, OSError,
                ValueError) as exc:
            result.error = str(exc)
        result.seconds = round(time.perf_counter() - started, 3)
        results.append(result)
        write_report(report, results)
        if on_card is not None:
            on_card(result)
    return results
