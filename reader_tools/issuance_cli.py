"""``sscard card personalize`` and ``sscard card batch-issue``: card issuance commands.

They belong to the ``card`` group (reader_tools/cli.py attaches them with
``group.add_command``); run standalone with ``python -m reader_tools.issuance_cli``. The RA is
reached over its enrollment API (``--ra-url``, bearer token from ``--token-file`` or
$SSCARD_RA_TOKEN). The PIN comes from ``--pin-file``, ``--pin-stdin`` or a prompt."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from reader_tools.issuance_client import RestBackend
from reader_tools.personalize import (
    STEPS,
    AwaitingApproval,
    CardOrder,
    PersonalisationError,
    Personalizer,
)
from sscard.card.records import HolderData
from sscard.card.validation import CardDataError, validate_pin
from sscard.cli import data_home
from sscard.exitcodes import Exit
from sscard.secrets_input import read_secret

EXIT_WAITING = Exit.WAITING
_FILE = click.Path(dir_okay=False, path_type=Path)


def _home() -> Path:
    return data_home(click.get_current_context())


def default_journal_dir() -> Path:
    return _home() / "issuance-journal"


def _backend(ra_url: str, token_file: Path | None) -> RestBackend:
    token = read_secret(file=token_file, prompt="RA API token",
                        env_var=None if token_file else "SSCARD_RA_TOKEN").decode().strip()
    return RestBackend(ra_url, token)


def _pin(pin_file: Path | None, pin_stdin: bool) -> str:
    pin = read_secret(file=pin_file, from_stdin=pin_stdin, prompt="New cardholder PIN",
                      confirm=not (pin_file or pin_stdin)).decode()
    try:
        return validate_pin(pin, "new PIN")
    except CardDataError as exc:
        raise click.UsageError(str(exc)) from None


def _order(data_path: Path, batch: str | None) -> CardOrder:
    try:
        raw: Any = json.loads(data_path.read_text(encoding="utf-8"))
        holder = HolderData(**{k: str(raw[k]) for k in ("ssn", "name", "sex", "ethnicity",
                                                        "birthplace", "birth_date")})
        number = str(raw["card_number"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"{data_path} is not valid JSON: {exc}") from None
    except KeyError as exc:
        raise click.UsageError(f"{data_path} lacks the field {exc.args[0]}") from None
    except TypeError:
        raise click.UsageError(f"{data_path} must hold a JSON object") from None
    try:
        holder.validate()
    except CardDataError as exc:
        raise click.UsageError(f"invalid holder data: {exc}") from None
    return CardOrder(holder, number, batch=batch or raw.get("batch"))


def _stop_after(step: str | None) -> Any:
    """Testing: die (no clean-up, as on SIGKILL) right after ``step`` is journaled."""
    def on_step(done: str) -> None:
        if done == step:
            os._exit(137)
    return on_step


ra_options = [
    click.option("--ra-url", envvar="SSCARD_RA_URL", required=True,
                 help="The RA's base URL ($SSCARD_RA_URL)."),
    click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="File holding the RA API token (default: $SSCARD_RA_TOKEN or a prompt)."),
    click.option("--journal-dir", type=click.Path(file_okay=False, path_type=Path),
                 help="Personalisation journals (default: <home>/issuance-journal)."),
    click.option("--pin-stdin", is_flag=True, help="Read the new PIN from stdin."),
    click.option("--pin-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Read the new PIN from the first line of a file."),
    click.option("--stop-after", type=click.Choice(STEPS), hidden=True,
                 help="Testing: exit abruptly after this step."),
]


def with_ra_options(f: Any) -> Any:
    for option in reversed(ra_options):
        f = option(f)
    return f


@click.command("personalize")
@click.option("--reader", metavar="NAME", default=None, help="Card reader ($SSCARD_READER).")
@click.option("--psam-reader", metavar="NAME", default=None,
              help="PSAM reader ($SSCARD_PSAM_READER).")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="Cardholder JSON: ssn, name, sex, ethnicity, birthplace, "
              "birth_date, card_number (and optionally batch).")
@click.option("--batch", default=None, help="A batch an officer pre-authorised.")
@click.option("--rollback", is_flag=True,
              help="Roll back the unfinished card in the reader: revoke what was issued for "
                   "it and clear its certificates and holder data.")
@click.option("--kmc-url", default=None,
              help="Authenticate to the card with cryptograms computed by the KMC at this URL "
                   "(a terminal without a PSAM) instead of the PSAM.")
@click.option("--kmc-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="This terminal's KMC API key (with --kmc-url).")
@with_ra_options
def personalize(reader: str | None, psam_reader: str | None, data_path: Path | None,
                batch: str | None, rollback: bool, kmc_url: str | None,
                kmc_key_file: Path | None, ra_url: str, token_file: Path | None,
                journal_dir: Path | None, pin_stdin: bool, pin_file: Path | None,
                stop_after: str | None) -> None:
    """Personalise the blank card in the reader end to end (data, PIN, on-card key, dual
    certificates), or resume an interrupted run, or --rollback it."""
    from reader_tools.session import card_errors, open_card

    journals = journal_dir or default_journal_dir()
    backend = _backend(ra_url, token_file)
    remote = None
    kmc_errors: tuple[type[Exception], ...] = ()
    if kmc_url is not None:
        from keymgmt.client import KmcClient, KmcServiceError, RemoteAuthenticator

        kmc_errors = (KmcServiceError,)

        key = read_secret(file=kmc_key_file, prompt="KMC API key").decode().strip()
        remote = RemoteAuthenticator(KmcClient(kmc_url, key))

    def authenticator(opened: Any) -> Any:
        return remote if remote is not None else opened.need_psam()

    if rollback:
        with card_errors(), open_card(reader, psam_reader, with_psam=remote is None) as opened:
            p = Personalizer(opened.client, authenticator(opened), backend, journals)
            try:
                journal = p.rollback("rolled back by card-issuing staff")
            except PersonalisationError as exc:
                raise click.ClickException(str(exc)) from None
        click.echo(f"card {journal.card_id} rolled back: its certificates are revoked and "
                   "cleared")
        return
    if data_path is None:
        raise click.UsageError("give the cardholder data with --data FILE (or --rollback)")
    order = _order(data_path, batch)
    pin = _pin(pin_file, pin_stdin)
    with card_errors(), open_card(reader, psam_reader, with_psam=remote is None) as opened:
        p = Personalizer(opened.client, authenticator(opened), backend, journals,
                         _stop_after(stop_after))
        try:
            outcome = p.personalise(order, pin)
        except AwaitingApproval as exc:
            click.echo(str(exc), err=True)
            raise SystemExit(EXIT_WAITING) from None
        except PersonalisationError as exc:
            raise click.ClickException(f"{exc} (journal kept: run again to resume, or "
                                       "--rollback)") from None
        except kmc_errors as exc:
            raise click.ClickException(f"card authentication through the KMC failed: {exc}"
                                       " (journal kept)") from None
    if outcome.already_issued:
        click.echo(f"card {order.card_number} was already issued to {order.holder.ssn} "
                   f"(request {outcome.request_id}); nothing written")
        return
    click.echo(f"card {order.card_number} for {order.holder.ssn} issued: request "
               f"{outcome.request_id}, signing certificate {outcome.sign_serial}, encryption "
               f"certificate {outcome.enc_serial}")


@click.command("batch-issue")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--cards-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Emulated cards: <card_number>.card.json each (created blank if absent).")
@click.option("--report", type=_FILE, required=True,
              help="Per-card result report; .json for JSON, anything else CSV.")
@click.option("--batch", default=None, help="A batch an officer pre-authorised.")
@click.option("--region", default="639900", show_default=True,
              help="Region code of new blank cards.")
@with_ra_options
def batch_issue(csv_file: Path, cards_dir: Path, report: Path, batch: str | None, region: str,
                ra_url: str, token_file: Path | None, journal_dir: Path | None,
                pin_stdin: bool, pin_file: Path | None, stop_after: str | None) -> None:
    """Personalise a card for each row of CSV_FILE (columns ssn, name, sex, ethnicity,
    birthplace, birth_date, card_number), with a progress bar; run again to resume."""
    from reader_tools.batch import BatchFileError, CardResult, read_rows, run_batch

    try:
        rows = read_rows(csv_file, batch)
    except BatchFileError as exc:
        raise click.UsageError(str(exc)) from None
    backend = _backend(ra_url, token_file)
    pin = _pin(pin_file, pin_stdin)
    journals = journal_dir or default_journal_dir()
    progress: Any = click.progressbar(length=len(rows), label="issuing cards",
                                      item_show_func=lambda item: item,
                                      file=sys.stderr)
    with progress as bar:
        def advance(result: CardResult) -> None:
            bar.update(1, f"{result.card_number} {result.status}")

        results = run_batch(rows, cards_dir, journals, backend, pin, report, region,
                            on_card=advance, on_step=_stop_after(stop_after))
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    click.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
               + f"; report: {report}")
    if counts.get("failed"):
        raise SystemExit(1)


@click.group("card")
def standalone() -> None:
    """Card issuance (these commands also appear under ``sscard card``)."""


standalone.add_command(personalize)
standalone.add_command(batch_issue)

if __name__ == "__main__":
    standalone()
