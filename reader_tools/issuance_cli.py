"""``sscard card personalize`` and ``sscard card batch-issue``: card issuance commands.

They belong to the ``card`` group (reader_tools/cli.py attaches them with
``group.add_command``); run standalone with ``python -m reader_tools.issuance_cli``. The RA is
reached over its enrollment API (``--ra-url``, bearer token from ``--token-file`` or
$SSCARD_RA_TOKEN). The PIN comes from ``--pin-file``, ``--pin-stdin`` or a prompt."""

from __future__ import annotations

import json
import os
import re
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
    SystemicFailure,
)
from reader_tools.session import CardCommandError
from sscard.card.records import HolderData
from sscard.card.validation import CardDataError, validate_new_pin
from sscard.cli import data_home
from sscard.exitcodes import Exit
from sscard.secrets_input import read_secret

EXIT_WAITING = Exit.WAITING
EXIT_RA_UNAVAILABLE = Exit.RA_UNAVAILABLE
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
        return validate_new_pin(pin, "new PIN")
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
        except SystemicFailure as exc:
            kept = " (journal kept: run again to resume)" if exc.card_touched else \
                " (the card was not touched)"
            raise CardCommandError(f"{exc}{kept}", EXIT_RA_UNAVAILABLE) from None
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
@click.option("--reader", metavar="NAME", default=None,
              help="Issue on real cards in this PC/SC reader, one after another: the tool asks "
                   "for each card, waits for it, and asks for it to be removed.")
@click.option("--psam-reader", metavar="NAME", default=None,
              help="With --reader: the PSAM's reader (default: found automatically, or "
                   "$SSCARD_PSAM_READER).")
@click.option("--wait-seconds", type=click.FloatRange(1), default=300, show_default=True,
              help="With --reader: how long to wait for a card to be inserted or removed "
                   "before the batch stops (run again to go on).")
@click.option("--cards-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Emulated cards instead of a reader: <card_number>.card.json each (created "
                   "blank if absent).")
@click.option("--report", type=_FILE, required=True,
              help="Per-card result report; .json for JSON, anything else CSV.")
@click.option("--batch", default=None, help="A batch an officer pre-authorised.")
@click.option("--region", default="639900", show_default=True,
              help="Region code of new blank emulated cards.")
@click.option("--encoding", default=None, metavar="CODEC",
              help="The CSV file's encoding (default: detected, UTF-8 with or without BOM, "
                   "else GBK/GB 18030 as Excel saves it on Chinese Windows).")
@with_ra_options
def batch_issue(csv_file: Path, reader: str | None, psam_reader: str | None,
                wait_seconds: float, cards_dir: Path | None, report: Path, batch: str | None,
                region: str, encoding: str | None, ra_url: str, token_file: Path | None,
                journal_dir: Path | None, pin_stdin: bool, pin_file: Path | None,
                stop_after: str | None) -> None:
    """Personalise a card for each row of CSV_FILE (columns ssn, name, sex, ethnicity,
    birthplace, birth_date, card_number), in a reader (--reader) or as emulated card files
    (--cards-dir), showing progress; run again to resume."""
    from reader_tools.batch import (
        BatchFileError,
        BatchStopped,
        CardResult,
        read_rows,
        run_batch,
        run_reader_batch,
    )

    if (reader is None) == (cards_dir is None):
        raise click.UsageError("give --reader NAME (real cards) or --cards-dir DIR (emulated "
                               "card files), one of them")
    try:
        rows = read_rows(csv_file, batch, encoding)
    except BatchFileError as exc:
        raise click.UsageError(str(exc)) from None
    backend = _backend(ra_url, token_file)
    pin = _pin(pin_file, pin_stdin)
    journals = journal_dir or default_journal_dir()
    stopped: BatchStopped | None = None
    results: list[CardResult] = []
    if reader is not None:
        done = 0

        def progress_line(result: CardResult) -> None:
            nonlocal done
            done += 1
            click.echo(f"[{done}/{len(rows)}] {result.card_number} {result.status}", err=True)

        try:
            results = run_reader_batch(
                rows, reader, psam_reader or os.environ.get("SSCARD_PSAM_READER") or None,
                journals, backend, pin, report, wait_seconds,
                say=lambda text: click.echo(text, err=True), on_card=progress_line,
                on_step=_stop_after(stop_after))
        except BatchStopped as exc:
            stopped = exc
    else:
        assert cards_dir is not None
        bar_cm: Any = click.progressbar(length=len(rows), label="issuing cards",
                                        item_show_func=lambda item: item, file=sys.stderr)
        with bar_cm as bar:
            def advance(result: CardResult) -> None:
                bar.update(1, f"{result.card_number} {result.status}")

            try:
                results = run_batch(rows, cards_dir, journals, backend, pin, report, region,
                                    on_card=advance, on_step=_stop_after(stop_after))
            except BatchStopped as exc:
                stopped = exc
    if stopped is not None:
        from reader_tools.session import EXIT_NO_CARD

        raise CardCommandError(f"{stopped} (report: {report})",
                               EXIT_NO_CARD if stopped.at_the_reader else EXIT_RA_UNAVAILABLE)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    click.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
               + f"; report: {report}")
    if counts.get("failed"):
        raise SystemExit(1)


# -- the guide's step-by-step personalisation (docs/card-issuing-guide.md §4) ---------------


def _ra_only(f: Any) -> Any:
    f = click.option("--token-file", type=click.Path(exists=True, dir_okay=False,
                     path_type=Path), help="File holding the RA API token (default: "
                     "$SSCARD_RA_TOKEN or a prompt).")(f)
    return click.option("--ra-url", envvar="SSCARD_RA_URL", required=True,
                        help="The RA's base URL ($SSCARD_RA_URL).")(f)


def _ra_call(call: Any, *args: Any) -> dict[str, Any]:
    """One RA call with its failure as a clear message: exit 13 when the RA cannot be used
    at all (unreachable, credential refused), 1 when it refused this request."""
    from reader_tools.issuance_client import IssuanceError, RaUnavailable

    try:
        return dict(call(*args))
    except RaUnavailable as exc:
        raise CardCommandError(str(exc), EXIT_RA_UNAVAILABLE) from None
    except IssuanceError as exc:
        raise click.ClickException(str(exc)) from None


def _read_csr(path: Path) -> bytes:
    from sscard.x509.pem import pem_blocks

    raw = path.read_bytes()
    if raw.lstrip().startswith(b"-----BEGIN"):
        blocks = [der for label, der in pem_blocks(raw) if label == "CERTIFICATE REQUEST"]
        if len(blocks) != 1:
            raise click.UsageError(f"{path}: expected one CERTIFICATE REQUEST PEM block")
        return blocks[0]
    return raw


def _waiting_or_refused(answer: dict[str, Any]) -> None:
    state = answer["state"]
    if state in ("submitted", "approved"):
        click.echo(f"enrollment {answer['request_id']} is {state}: it waits for an officer's "
                   "approval; run again once it is approved", err=True)
        raise SystemExit(EXIT_WAITING)
    if state != "done":
        raise click.ClickException(f"enrollment {answer['request_id']} is {state}: "
                                   f"{answer.get('error') or 'refused'}")


@click.command("enroll")
@click.option("--reader", metavar="NAME", default=None, help="Card reader ($SSCARD_READER).")
@click.option("--csr", "csr_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The request the card signed (`sscard card csr`), PEM or DER.")
@click.option("--card-number", default=None,
              help="The card's number (default: the one in the card's EF05).")
@click.option("--batch", default=None, help="A batch an officer pre-authorised.")
@_ra_only
def enroll(reader: str | None, csr_path: Path, card_number: str | None, batch: str | None,
           ra_url: str, token_file: Path | None) -> None:
    """Send the card's certificate request to the RA for the holder written on the card in
    the reader; prints the request id (exit 11 while it waits for an officer)."""
    from asn1crypto import csr as asn1csr

    from reader_tools.session import card_errors, open_card
    from sscard.card.errors import CardMismatch
    from sscard.card.integrity import card_point
    from sscard.card.validation import validate_card_number

    csr_der = _read_csr(csr_path)
    try:
        info = asn1csr.CertificationRequest.load(csr_der)
        csr_point = bytes(info["certification_request_info"]["subject_pk_info"]
                          ["public_key"].native)
    except (ValueError, TypeError, KeyError) as exc:
        raise click.UsageError(f"{csr_path} is not a certificate request: {exc}") from None
    with card_errors(), open_card(reader) as opened:
        card, holder = opened.client.read_card_data(), opened.client.read_holder_data()
        if card_point(opened.client, "sign") != csr_point:
            raise CardMismatch(f"refused: {csr_path} is not for the signing key of the card in "
                               "the reader (run `sscard card csr` with this card)")
        holder.validate()
        number = validate_card_number(card_number or card.card_number)
        card_id = card.card_id.hex().upper()
    backend = _backend(ra_url, token_file)
    answer = _ra_call(backend.submit, holder, card_id, number, csr_der, batch)
    click.echo(f"enrollment {answer['request_id']} for card {card_id} ({number}, "
               f"{holder.ssn}): {answer['state']}")
    _waiting_or_refused(answer)
    click.echo(f"next: sscard card fetch-certs {answer['request_id']} --out-dir DIR")


def _request_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """An enrollment's id as the RA gives it (`rq-` and hex digits): an empty or mangled one
    (an unset shell variable, a cut-off copy) is a usage error, not the RA's "not found"."""
    if not re.fullmatch(r"rq-[0-9a-f]{1,64}", value):
        raise click.BadParameter(f"{value!r} is not an enrollment id (rq-... as `sscard card "
                                 "enroll` prints it)")
    return value


@click.command("fetch-certs")
@click.argument("request_id", callback=_request_id)
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Writes sign.cer, enc.cer (DER) and enc.keyblob (the encryption key "
                   "wrapped for the card) here.")
@_ra_only
def fetch_certs(request_id: str, out_dir: Path, ra_url: str, token_file: Path | None) -> None:
    """Fetch an approved enrollment's signing and encryption certificates and the escrowed
    encryption key (wrapped for the card's own key) from the RA (exit 11 while waiting)."""
    import base64

    from sscard.secrets_input import write_private_file

    answer = _ra_call(_backend(ra_url, token_file).status, request_id)
    _waiting_or_refused(answer)
    missing = [k for k in ("sign_cert", "enc_cert", "enveloped_key_blob") if not answer.get(k)]
    if missing:
        raise click.ClickException(f"enrollment {request_id} is done but the RA gave no "
                                   f"{', '.join(missing)} (only the station that submitted it "
                                   "receives them)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, key in (("sign.cer", "sign_cert"), ("enc.cer", "enc_cert"),
                      ("enc.keyblob", "enveloped_key_blob")):
        write_private_file(out_dir / name, base64.b64decode(answer[key]))
    click.echo(f"enrollment {request_id}: sign.cer, enc.cer and enc.keyblob in {out_dir}; "
               f"next: sscard card certs --import-enc-key {out_dir / 'enc.keyblob'} "
               f"--write-sign {out_dir / 'sign.cer'} --write-enc {out_dir / 'enc.cer'}")


@click.command("confirm")
@click.argument("request_id", callback=_request_id)
@click.option("--reader", metavar="NAME", default=None, help="Card reader ($SSCARD_READER).")
@_ra_only
def confirm(request_id: str, reader: str | None, ra_url: str, token_file: Path | None) -> None:
    """Tell the RA the card is personalised (it marks the card issued), once the card in the
    reader holds exactly this enrollment's certificates for its own keys and holder."""
    import base64

    from reader_tools.session import card_errors, open_card
    from sscard.card.errors import CardMismatch
    from sscard.card.integrity import check_certificate

    backend = _backend(ra_url, token_file)
    answer = _ra_call(backend.status, request_id)
    _waiting_or_refused(answer)
    with card_errors(), open_card(reader) as opened:
        # the card keeps the file the last command selected (the PKI application after
        # `certs`): select the social security application before reading its EF06
        opened.client.select_ssse()
        holder = opened.client.read_holder_data()
        for which in ("sign", "enc"):
            expected = base64.b64decode(answer.get(f"{which}_cert") or "")
            if opened.client.read_certificate(which) != expected:
                raise CardMismatch(f"refused: the card's {which} certificate is not enrollment "
                                   f"{request_id}'s (load it with `sscard card certs` first)")
            check_certificate(opened.client, which, expected, holder.ssn)
    _ra_call(backend.confirm, request_id)
    click.echo(f"enrollment {request_id} confirmed: the card for {holder.ssn} is issued")


@click.group("card")
def standalone() -> None:
    """Card issuance (these commands also appear under ``sscard card``)."""


standalone.add_command(personalize)
standalone.add_command(batch_issue)
for _step in (enroll, fetch_certs, confirm):
    standalone.add_command(_step)

if __name__ == "__main__":
    standalone()
