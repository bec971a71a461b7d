"""Batch issuance from a CSV file: on real cards one after another in a PC/SC reader (the
tool asks for each card and waits for it), or on emulated cards (one state file each).

The whole file is checked first and every bad row reported at once. Each row is one card; its
personalisation is journaled like a single card's, so a batch that was interrupted runs again
from the top: finished cards are recognised (and reported again as done) without being
touched, the interrupted one resumes, the rest follow. The per-card report (CSV or JSON, by
the file's suffix) is rewritten atomically after every card. A failure that no card would
survive (the RA unreachable, its TLS, the station's credential) stops the batch at once."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reader_tools.issuance_client import IssuanceBackend, IssuanceError, RaUnavailable
from reader_tools.personalize import (
    AwaitingApproval,
    CardOrder,
    PersonalisationError,
    Personalizer,
    SystemicFailure,
)
from sscard.card.auth import PsamAuthenticator
from sscard.card.client import CardClient
from sscard.card.errors import CardError
from sscard.card.records import HolderData
from sscard.card.transport import InProcessTransport
from sscard.card.validation import CardDataError, validate_card_number

COLUMNS = ("ssn", "name", "sex", "ethnicity", "birthplace", "birth_date", "card_number")
REPORT_FIELDS = ("row", "card_number", "ssn", "state_file", "status", "request_id",
                 "sign_serial", "enc_serial", "seconds", "error")


class BatchFileError(ValueError):
    """The CSV file is unusable; ``problems`` lists every bad row (row, column, what is
    wrong) and the message shows them all."""

    def __init__(self, message: str, problems: list[RowProblem] | None = None) -> None:
        self.problems = problems or []
        lines = [message] + [f"  row {p.row}, {p.column}: {p.message}" for p in self.problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class RowProblem:
    row: int  # as a spreadsheet numbers it: the header is row 1
    column: str
    message: str


#: tried in turn when no encoding is given: UTF-8 (with or without the BOM Excel writes),
#: then GB 18030, the superset of GBK that Excel on Chinese Windows saves "CSV" in
DETECTED_ENCODINGS = ("utf-8-sig", "gb18030")


#: 6.39900197001E+17: what Excel makes of an 18-digit number in a column not set to text
_EXCEL_NUMBER = re.compile(r"\d+(\.\d+)?[eE]\+\d+")


def decode(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """The text of a batch file and the encoding it was read in."""
    for name in (encoding,) if encoding else DETECTED_ENCODINGS:
        try:
            return data.decode(name), name
        except LookupError:
            raise BatchFileError(f"unknown encoding {name!r}") from None
        except UnicodeDecodeError as exc:
            if encoding:
                raise BatchFileError(f"not {name} text: byte {exc.start} "
                                     f"({data[exc.start:exc.start + 1].hex()}) is "
                                     "invalid; give the right --encoding") from None
    raise BatchFileError("neither UTF-8 nor GBK/GB 18030 text; save the file as UTF-8 "
                         "or give --encoding")


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


def read_rows(path: Path, batch: str | None, encoding: str | None = None) -> list[BatchRow]:
    """Parse and check the whole file first: any bad row stops the batch before any card is
    touched, and every bad row is reported at once."""
    try:
        text, _used = decode(path.read_bytes(), encoding)
    except OSError as exc:
        raise BatchFileError(f"{path}: {exc.strerror or exc}") from None
    except BatchFileError as exc:
        raise BatchFileError(f"{path}: {exc}") from None
    problems: list[RowProblem] = []
    rows: list[BatchRow] = []
    first_seen: dict[tuple[str, str], int] = {}
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise BatchFileError(f"{path}: missing column(s) {', '.join(missing)} "
                                 f"(need {', '.join(COLUMNS)})")
        reader.fieldnames = header
        for record in reader:
            line = reader.line_num
            values = {k: (record.get(k) or "").strip() for k in COLUMNS}
            if not any(values.values()):
                continue  # an empty line (Excel leaves them at the end)
            holder = HolderData(**{k: values[k] for k in COLUMNS[:-1]})
            bad = [RowProblem(line, column, message) for column, message in holder.problems()]
            try:
                validate_card_number(values["card_number"])
            except CardDataError as exc:
                bad.append(RowProblem(line, "card_number", str(exc)))
            mangled = {c for c in ("ssn", "card_number") if _EXCEL_NUMBER.fullmatch(values[c])}
            bad = [p for p in bad if p.column not in mangled] + [
                RowProblem(line, c, f"{values[c]} is a number as Excel shows a long one: the "
                                    "digits are lost; format the column as text and type it "
                                    "again") for c in sorted(mangled)]
            for column in ("ssn", "card_number"):
                key = (column, values[column].upper())
                if key in first_seen:
                    bad.append(RowProblem(line, column, f"{values[column]} is also on row "
                                                        f"{first_seen[key]}"))
                elif values[column]:
                    first_seen[key] = line
            problems.extend(bad)
            if not bad:
                rows.append(BatchRow(line, CardOrder(holder, values["card_number"],
                                                     batch=batch)))
    except csv.Error as exc:
        raise BatchFileError(f"{path}: not a CSV file: {exc}") from None
    if problems:
        count = len({p.row for p in problems})
        raise BatchFileError(f"{path}: {count} bad row(s); no card was touched", problems)
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


class BatchStopped(Exception):
    """A systemic failure (RA unreachable, TLS, credential refused) stopped the batch: no
    further row was tried. The message names the cause; ``results`` are the cards before."""

    def __init__(self, message: str, results: list[CardResult],
                 at_the_reader: bool = False) -> None:
        super().__init__(message)
        self.results = results
        #: the reader stopped it (no card inserted or removed in time, reader gone), not the RA
        self.at_the_reader = at_the_reader


#: where one row's card is: a context manager giving (client, authenticator), the place to
#: name in the report, and how to discard a card file this run created (None: keep it)
CardSlot = tuple[AbstractContextManager[tuple[CardClient, Any]], str, Callable[[], None] | None]


def _run(rows: list[BatchRow], backend: IssuanceBackend, journal_dir: Path, pin: str,
         report: Path, slot_for: Callable[[int, BatchRow], CardSlot],
         on_card: Callable[[CardResult], None] | None,
         on_step: Callable[[str], None] | None,
         after: Callable[[int, CardResult], None] | None = None) -> list[CardResult]:
    """Personalise each row's card: a card that fails on its own (one holder refused) is
    reported and the batch goes on; a systemic failure raises BatchStopped at once."""
    try:
        backend.check()
    except RaUnavailable as exc:
        raise BatchStopped(f"batch not started: {exc}", []) from None
    results: list[CardResult] = []
    for index, row in enumerate(rows):
        cm, where, discard = slot_for(index, row)
        result = CardResult(row.line, row.order.card_number, row.order.holder.ssn, where,
                            "failed")
        started = time.perf_counter()
        try:
            with cm as (client, authenticator):
                outcome = Personalizer(client, authenticator, backend, journal_dir,
                                       on_step).personalise(row.order, pin)
            result.status = outcome.status
            result.request_id = outcome.request_id
            result.sign_serial = outcome.sign_serial or ""
            result.enc_serial = outcome.enc_serial or ""
        except SystemicFailure as exc:
            if discard is not None and not exc.card_touched:
                discard()  # no blank card file left behind
            result.error = str(exc)
            result.seconds = round(time.perf_counter() - started, 3)
            results.append(result)
            write_report(report, results)
            raise BatchStopped(f"batch stopped at row {row.line} (card "
                               f"{row.order.card_number}): {exc}; the {len(rows) - len(results)}"
                               " row(s) after it were not tried", results) from None
        except AwaitingApproval as exc:
            result.status, result.error = "waiting", str(exc)
            result.request_id = exc.request_id
        except (PersonalisationError, IssuanceError, CardError, CardDataError, OSError,
                ValueError) as exc:
            result.error = str(exc)
        result.seconds = round(time.perf_counter() - started, 3)
        results.append(result)
        write_report(report, results)
        if on_card is not None:
            on_card(result)
        if after is not None:
            after(index, result)
    return results


def run_batch(rows: list[BatchRow], cards_dir: Path, journal_dir: Path,
              backend: IssuanceBackend, pin: str, report: Path, region: str = "639900",
              on_card: Callable[[CardResult], None] | None = None,
              on_step: Callable[[str], None] | None = None) -> list[CardResult]:
    """Emulated cards: one state file per row, created blank if absent."""
    def slot(_index: int, row: BatchRow) -> CardSlot:
        path = state_file(cards_dir, row.order.card_number)
        created = not path.exists()
        _blank(path, region)
        discard = (lambda: path.unlink(missing_ok=True)) if created else None
        return contextlib.contextmanager(_open)(path, region), str(path), discard

    return _run(rows, backend, journal_dir, pin, report, slot, on_card, on_step)


class ReaderWait:
    """Waits for a card to be inserted into or removed from a PC/SC reader (and, when named,
    for the PSAM to be present), polling pcscd."""

    def __init__(self, reader: str, psam_reader: str | None, seconds: float,
                 poll: float = 0.2) -> None:
        self.reader, self.psam_reader, self.seconds, self.poll = reader, psam_reader, seconds, poll

    def _present(self) -> tuple[bool, bool]:
        from sscard.card.transport import PcscContext

        with PcscContext() as ctx:
            readers = ctx.readers()
            if self.reader not in readers:
                raise CardReaderGone(f"reader {self.reader!r} not found (readers: "
                                     f"{', '.join(readers) or 'none'})")
            card = ctx.card_present(self.reader)
            psam = self.psam_reader is None or ctx.card_present(self.psam_reader)
        return card, psam

    def until(self, inserted: bool) -> bool:
        """True once the card is in (with the PSAM) or out; False after ``seconds``."""
        deadline = time.monotonic() + self.seconds
        while True:
            card, psam = self._present()
            if (card and psam) if inserted else not card:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)


class CardReaderGone(CardError):
    """The reader itself disappeared (unplugged, pcscd stopped)."""


def run_reader_batch(rows: list[BatchRow], reader: str, psam_reader: str | None,
                     journal_dir: Path, backend: IssuanceBackend, pin: str, report: Path,
                     wait_seconds: float, say: Callable[[str], None],
                     on_card: Callable[[CardResult], None] | None = None,
                     on_step: Callable[[str], None] | None = None) -> list[CardResult]:
    """A real counter: for each row, ask for the next blank card in ``reader``, wait for it,
    personalise it (holder data to the card in the reader), then ask for it to be removed.
    No card inserted (or removed) within ``wait_seconds`` stops the batch; run again to
    resume (issued cards are recognised by their journal)."""
    from reader_tools.session import open_card

    wait = ReaderWait(reader, psam_reader, wait_seconds)
    total = len(rows)
    results_so_far: list[CardResult] = []

    def stop(message: str) -> BatchStopped:
        return BatchStopped(f"{message}; run the same command again to go on", results_so_far,
                            at_the_reader=True)

    @contextlib.contextmanager
    def in_reader() -> Iterator[tuple[CardClient, Any]]:
        with open_card(reader, psam_reader, with_psam=True) as opened:
            yield opened.client, opened.need_psam()

    def slot(index: int, row: BatchRow) -> CardSlot:
        holder = row.order.holder
        say(f"card {index + 1} of {total}: insert the blank card for {holder.name} "
            f"({holder.ssn}, card number {row.order.card_number}) into {reader}")
        try:
            if not wait.until(inserted=True):
                raise stop(f"no card was inserted within {wait_seconds:g} s (row {row.line})")
        except CardReaderGone as exc:
            raise stop(str(exc)) from None
        return in_reader(), reader, None

    def after(index: int, result: CardResult) -> None:
        results_so_far.append(result)
        say(f"card {index + 1} of {total} {result.status}"
            + (f": {result.error}" if result.error else "") + "; remove the card")
        try:
            if not wait.until(inserted=False):
                raise stop(f"card {index + 1} was not removed within {wait_seconds:g} s")
        except CardReaderGone as exc:
            raise stop(str(exc)) from None

    return _run(rows, backend, journal_dir, pin, report, slot, on_card, on_step, after)
