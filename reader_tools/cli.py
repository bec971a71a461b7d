"""``sscard card ...``: card-issuing tools.

Every command that touches a card goes through PC/SC (pcscd); ``emulate`` puts an emulated card
and PSAM into the virtual readers. PINs come from a prompt, ``--pin-stdin`` or ``--pin-file``,
never from the command line."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sscard.cli import LazyGroup
from sscard.secrets_input import read_secret

if TYPE_CHECKING:
    from sscard.card.client import CardInfo

KEY_UPDATE = 0x0B


def reader_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--psam-reader", metavar="NAME", default=None,
                     help="PC/SC reader holding the PSAM (default: found automatically, or "
                          "$SSCARD_PSAM_READER).")(f)
    f = click.option("--reader", metavar="NAME", default=None,
                     help="PC/SC reader holding the card (default: the first reader with a "
                          "social security card, or $SSCARD_READER).")(f)
    return f


def pin_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--pin-stdin", is_flag=True,
                     help="Read the PIN(s) from stdin, one per line.")(f)
    f = click.option("--pin-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Read the PIN from the first line of a file.")(f)
    return f


def _pin(prompt: str, pin_file: Path | None, pin_stdin: bool, confirm: bool = False,
         new: bool = False) -> str:
    """Read a PIN; a ``new`` one (to be set on the card) must pass the one new-PIN rule."""
    from sscard.card.validation import CardDataError, validate_new_pin, validate_pin

    value = read_secret(file=pin_file, from_stdin=pin_stdin, prompt=prompt,
                        confirm=confirm).decode("utf-8")
    try:
        return (validate_new_pin if new else validate_pin)(value, prompt)
    except CardDataError as exc:
        raise click.UsageError(str(exc)) from None


#: personalisation and batches live in their own modules and import the RA client (requests,
#: the request signer): loaded only when run, so the other card commands start quickly
LAZY = {
    "personalize": ("reader_tools.issuance_cli:personalize",
                    "Personalise the blank card in the reader end to end (data, PIN, on-card key, "
                    "dual certificates), or resume an interrupted run, or --rollback it."),
    "batch-issue": ("reader_tools.issuance_cli:batch_issue",
                    "Personalise a card for each row of CSV_FILE (columns ssn, name, sex, "
                    "ethnicity, birthplace, birth_date, card_number), in a reader (--reader) or "
                    "as emulated card files (--cards-dir), showing progress; run again to "
                    "resume."),
    "enroll": ("reader_tools.issuance_cli:enroll",
               "Send the card's certificate request to the RA for the holder written on the "
               "card in the reader; prints the request id (exit 11 while it waits for an "
               "officer)."),
    "fetch-certs": ("reader_tools.issuance_cli:fetch_certs",
                    "Fetch an approved enrollment's signing and encryption certificates and the "
                    "escrowed encryption key (wrapped for the card's own key) from the RA (exit "
                    "11 while waiting)."),
    "confirm": ("reader_tools.issuance_cli:confirm",
                "Tell the RA the card is personalised (it marks the card issued), once the card "
                "in the reader holds exactly this enrollment's certificates for its own keys "
                "and holder."),
}


@click.group("card", cls=LazyGroup, lazy=LAZY)
def group() -> None:
    """Social security card: read, PIN, keys, certificates, emulation, personalisation."""


# --- emulate ------------------------------------------------------------------------------------


@group.command("emulate")
@click.option("--state", "state_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The card's state file (its EEPROM); every write to it is atomic.")
@click.option("--new-sample", is_flag=True,
              help="Create a sample card (holder data, PIN 123456) if the file does not exist.")
@click.option("--new-blank", is_flag=True,
              help="Create a blank card as from the factory (no holder data, no signing key, "
                   "no certificates, PIN 123456) if the file does not exist: one to personalise.")
@click.option("--generation", type=click.Choice(["2", "3"]), default="3", show_default=True,
              help="Card generation for --new-sample or --new-blank (2: 3DES, 3: SM4 and the "
                   "PKI application).")
@click.option("--psam-state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The PSAM's state file (default: STATE with .psam appended; created with "
                   "the test keys if absent).")
@click.option("--no-psam", is_flag=True, help="Do not put a PSAM into the second slot.")
@click.option("--port", type=int, default=lambda: int(os.environ.get("SSCARD_VPCD_PORT",
              "35963")), show_default="$SSCARD_VPCD_PORT or 35963",
              help="vpcd port of the card's slot; the PSAM uses the next one.")
@click.option("--pin-tries", type=click.IntRange(1, 15), default=3, show_default=True,
              help="PIN try limit of a new sample or blank card.")
@click.option("--pull-after", type=click.IntRange(0), default=None, hidden=True,
              help="Testing: pull the card out after this many commands.")
def emulate(state_path: Path, new_sample: bool, new_blank: bool, generation: str,
            psam_state: Path | None, no_psam: bool, port: int, pin_tries: int,
            pull_after: int | None) -> None:
    """Run an emulated card (and PSAM) attached to pcscd until stopped (Ctrl-C or SIGTERM)."""
    from sscard.emulator.card import EmulatedCard
    from sscard.emulator.psam import EmulatedPsam
    from sscard.emulator.runner import EmulatorRunner, prepare_card, prepare_psam
    from sscard.emulator.state import StateFileError

    if new_sample and new_blank:
        raise click.UsageError("--new-sample and --new-blank exclude each other: pick one")
    try:
        state = prepare_card(state_path, new_sample, int(generation), pin_tries, new_blank)
        card = EmulatedCard(state, state_path)
        psam = None
        if not no_psam:
            psam_path = psam_state or state_path.with_name(state_path.name + ".psam")
            region = card.state.records["SSSE/0005"][0][2:5].hex()
            psam = EmulatedPsam(prepare_psam(psam_path, region))
    except (FileNotFoundError, StateFileError) as exc:
        raise click.ClickException(str(exc)) from None
    runner = EmulatorRunner(card, psam, port=port, pull_after=pull_after)

    def _stop(_signum: int, _frame: object) -> None:
        runner.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner.start()
    click.echo(f"emulated generation-{state.generation} card {state.atr.hex().upper()} on vpcd "
               f"port {port}" + ("" if no_psam else f", PSAM on port {port + 1}")
               + "; stop with Ctrl-C", err=True)
    runner.wait()
    runner.stop()
    click.echo("card removed (emulator stopped)", err=True)


# --- readers and info ---------------------------------------------------------------------------


@group.command("readers")
def readers() -> None:
    """List PC/SC readers and whether each holds a card."""
    from reader_tools.session import card_errors
    from sscard.card import errors
    from sscard.card.transport import PcscContext

    with card_errors(), PcscContext() as ctx:
        names = ctx.readers()
        if not names:
            raise errors.NoReader("no card reader attached")
        for name in names:
            click.echo(f"{name}\t{'card present' if ctx.card_present(name) else 'empty'}")


def _info_json(info: CardInfo) -> dict[str, Any]:
    card, holder = info.card, info.holder
    return {
        "atr": info.atr.hex().upper(),
        "algorithm": info.algorithm.name,
        "card_id": card.card_id.hex().upper(),
        "region_code": card.region_code,
        "card_type": card.card_type,
        "spec_version": card.spec_version,
        "init_org": card.init_org,
        "issue_date": card.issue_date,
        "expiry_date": card.expiry_date,
        "card_number": card.card_number,
        "ssn": holder.ssn,
        "name": holder.name,
        "sex": holder.sex,
        "ethnicity": holder.ethnicity,
        "birthplace": holder.birthplace,
        "birth_date": holder.birth_date,
    }


def _named(fields: dict[str, Any]) -> dict[str, Any]:
    """The text view: sex, ethnicity and birthplace by their GB/T names (a code no table
    knows is shown as it is, marked)."""
    from sscard import codetables

    namers = {"sex": codetables.sex_name, "ethnicity": codetables.ethnicity_name,
              "birthplace": codetables.region_name}
    shown = dict(fields)
    for key, namer in namers.items():
        code = str(fields.get(key, ""))
        if code:
            shown[key] = namer(code) or f"{code} (not a known code)"
    return shown


@group.command("info")
@reader_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "mohrss"]), default="text",
              show_default=True, help="mohrss: the iReadCardBas string (11 '|'-ended fields).")
def info(reader: str | None, psam_reader: str | None, fmt: str) -> None:
    """Read the card and holder data (free-read files EF05 and EF06)."""
    from reader_tools.session import card_errors, open_card
    from sscard.card import mohrss

    with card_errors(), open_card(reader, psam_reader, optional_psam=fmt == "mohrss") as opened:
        data = opened.client.read_info()
        if fmt == "mohrss":
            terminal, device = "000000000000", ""  # what the API reports without a PSAM
            if opened.psam is not None:
                terminal, device = opened.psam.terminal_number(), opened.psam.device_number()
            click.echo(mohrss.ireadcardbas(data, terminal, device))
        else:
            fields = _info_json(data)
            fields.update(opened.client.read_identification() or {})
            if fmt == "json":  # codes, as on the card
                click.echo(json.dumps(fields, ensure_ascii=False, indent=2))
            else:
                for key, value in _named(fields).items():
                    click.echo(f"{key:13} {value}")


# --- PIN ----------------------------------------------------------------------------------------


@group.group("pin")
def pin_group() -> None:
    """Verify, change, unblock or reload the cardholder PIN."""


@pin_group.command("verify")
@reader_options
@pin_options
def pin_verify(reader: str | None, psam_reader: str | None, pin_file: Path | None,
               pin_stdin: bool) -> None:
    """Verify the PIN; a wrong PIN exits non-zero and says how many tries are left."""
    from reader_tools.session import card_errors, open_card

    pin = _pin("PIN", pin_file, pin_stdin)
    with card_errors(), open_card(reader, psam_reader) as opened:
        opened.client.verify_pin(pin)
    click.echo("PIN correct")


@pin_group.command("change")
@reader_options
@pin_options
def pin_change(reader: str | None, psam_reader: str | None, pin_file: Path | None,
               pin_stdin: bool) -> None:
    """Change the PIN (old PIN, then the new one; with --pin-stdin: two lines)."""
    from reader_tools.session import card_errors, open_card

    if pin_file is not None:
        raise click.UsageError("pin change reads two PINs: use --pin-stdin or the prompt")
    old = _pin("Current PIN", None, pin_stdin)
    new = _pin("New PIN", None, pin_stdin, confirm=not pin_stdin, new=True)
    with card_errors(), open_card(reader, psam_reader) as opened:
        opened.client.change_pin(old, new)
    click.echo("PIN changed")


def _sm_pin_command(action: str, reader: str | None, psam_reader: str | None,
                    pin_file: Path | None, pin_stdin: bool) -> None:
    from reader_tools.session import card_errors, open_card

    new = _pin("New PIN", pin_file, pin_stdin, confirm=not (pin_stdin or pin_file), new=True)
    with card_errors(), open_card(reader, psam_reader, with_psam=True) as opened:
        psam = opened.need_psam()
        if action == "unblock":
            opened.client.unblock_pin(new, psam)
        else:
            opened.client.reload_pin(new, psam)
    click.echo(f"PIN {action}ed: the new PIN is set and the try counter reset")


@pin_group.command("unblock")
@reader_options
@pin_options
def pin_unblock(reader: str | None, psam_reader: str | None, pin_file: Path | None,
                pin_stdin: bool) -> None:
    """Unblock the PIN and set a new one (secure messaging through the PSAM)."""
    _sm_pin_command("unblock", reader, psam_reader, pin_file, pin_stdin)


@pin_group.command("reload")
@reader_options
@pin_options
def pin_reload(reader: str | None, psam_reader: str | None, pin_file: Path | None,
               pin_stdin: bool) -> None:
    """Reload (reset) the PIN to a new value (secure messaging through the PSAM)."""
    _sm_pin_command("reload", reader, psam_reader, pin_file, pin_stdin)


# --- keys, signatures, certificates ----------------------------------------------------------


@group.command("keygen")
@reader_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the new public key here (PEM); default: print it.")
@click.option("--force", is_flag=True,
              help="Replace a certified signing key (or one an issuance under way names): "
                   "recorded in the card's journal first; the stale certificate is cleared "
                   "from the card and must be revoked through the RA.")
@click.option("--journal-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Personalisation journals (default: <home>/issuance-journal).")
def keygen(reader: str | None, psam_reader: str | None, out: Path | None, force: bool,
           journal_dir: Path | None) -> None:
    """Generate the card's SM2 signing key pair on the card (after external authentication
    through the PSAM); print the public key. A key that a certificate on the card certifies
    is replaced only with --force."""
    from reader_tools.issuance_cli import default_journal_dir
    from reader_tools.issuance_journal import ROLLED_BACK, Journal
    from reader_tools.session import card_errors, open_card
    from sscard.card import errors
    from sscard.card.integrity import card_point
    from sscard.crypto.sm2 import SM2PublicKey
    from sscard.x509.pem import der_to_pem

    stale: str | None = None
    with card_errors(), open_card(reader, psam_reader, with_psam=True) as opened:
        client = opened.client
        card_id = client.read_card_data().card_id.hex().upper()
        cert = client.read_certificate("sign")
        journal = Journal.for_card(journal_dir or default_journal_dir(), card_id)
        in_issuance = journal.done("keygen") and journal.status != ROLLED_BACK
        old = card_point(client, "sign")
        serial = _cert_serial(cert) if cert is not None else None
        if cert is not None or in_issuance:
            why = (f"a certificate on the card ({_cert_summary(cert)}) certifies it"
                   if cert is not None else
                   f"the issuance journal {journal.path} names it in a request")
            if not force:
                raise errors.CertifiedKey(
                    f"refused: card {card_id}'s signing key is certified: {why}. Replacing "
                    "it leaves that certificate without its key; give --force to replace it "
                    "anyway (recorded in the card's journal), then revoke the certificate")
            # recorded before the key is replaced, so that no forced replacement goes unseen
            journal.log_event("signing key replacement with --force", reason=why,
                              old_point=old.hex() if old else None, certificate_serial=serial)
            stale = why
        client.external_authenticate(KEY_UPDATE, opened.need_psam())
        point = client.generate_signing_key()
        if stale is not None:
            client.clear_certificate("sign")
            journal.log_event("signing key replaced with --force",
                              old_point=old.hex() if old else None, new_point=point.hex(),
                              certificate_serial=serial, certificate_cleared=cert is not None)
    if stale is not None:
        click.echo(f"signing key replaced (--force, recorded in {journal.path}); {stale}: "
                   "that certificate was cleared from the card, revoke it through the RA",
                   err=True)
    pem = der_to_pem(SM2PublicKey.from_point(point).spki_der(), "PUBLIC KEY")
    if out:
        out.write_bytes(pem)
        click.echo(f"on-card SM2 key generated; public key written to {out}")
    else:
        click.echo(pem.decode("ascii"), nl=False)


@group.command("sign")
@reader_options
@pin_options
@click.option("--in", "in_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Data to sign (default: stdin, unless --pin-stdin).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the DER signature here (default: print base64).")
@click.option("--uid", default="1234567812345678", show_default=True, help="SM2 user ID.")
def sign(reader: str | None, psam_reader: str | None, pin_file: Path | None, pin_stdin: bool,
         in_path: Path | None, out: Path | None, uid: str) -> None:
    """Sign data with the on-card SM2 key (SM2 with SM3, DER signature)."""
    from reader_tools.session import card_errors, open_card
    from sscard.card.keyhandle import CardKey

    if in_path is None and pin_stdin:
        raise click.UsageError("with --pin-stdin give the data with --in FILE")
    pin = _pin("PIN", pin_file, pin_stdin)
    data = in_path.read_bytes() if in_path else sys.stdin.buffer.read()
    with card_errors(), open_card(reader, psam_reader) as opened:
        signature = CardKey(opened.client, lambda: pin).sign(data, uid=uid.encode())
    if out:
        out.write_bytes(signature)
        click.echo(f"signature written to {out}")
    else:
        click.echo(base64.b64encode(signature).decode("ascii"))


@group.command("csr")
@reader_options
@pin_options
@click.option("--subject", required=True,
              help='Subject, e.g. "CN=张三,serialNumber=111111198101011110,O=...,C=CN".')
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the PKCS#10 request (PEM).")
def csr(reader: str | None, psam_reader: str | None, pin_file: Path | None, pin_stdin: bool,
        subject: str, out: Path) -> None:
    """A PKCS#10 request for the card's signing key, signed by the card (proof of
    possession for the RA)."""
    from reader_tools.session import card_errors, open_card
    from sscard.card.keyhandle import CardKey
    from sscard.x509.builder import CsrBuilder
    from sscard.x509.names import parse_name
    from sscard.x509.pem import der_to_pem

    try:
        name = parse_name(subject)
    except ValueError as exc:
        raise click.UsageError(f"invalid --subject: {exc}") from None
    pin = _pin("PIN", pin_file, pin_stdin)
    with card_errors(), open_card(reader, psam_reader) as opened:
        request = CsrBuilder().subject(name).sign(CardKey(opened.client, lambda: pin))
    out.write_bytes(der_to_pem(request.dump(), "CERTIFICATE REQUEST"))
    click.echo(f"certificate request signed by the card written to {out}")


def _cert_serial(der: bytes) -> str:
    from asn1crypto import x509

    try:
        return f"{x509.Certificate.load(der).serial_number:X}"
    except (ValueError, TypeError):
        return "unparseable"


def _cert_summary(der: bytes) -> str:
    from asn1crypto import x509

    try:
        cert = x509.Certificate.load(der)
        return (f"subject: {cert.subject.human_friendly}; serial: {cert.serial_number:X}; "
                f"not after: {cert['tbs_certificate']['validity']['not_after'].native}")
    except (ValueError, TypeError) as exc:
        return f"unparseable certificate ({exc})"


@group.command("certs")
@reader_options
@click.option("--write-sign", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Write this signing certificate (DER or PEM) first.")
@click.option("--write-enc", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Write this encryption certificate (DER or PEM) first.")
@click.option("--import-enc-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Import the KMC's ENVELOPEDKEYBLOB (binary) first.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Save the certificates read back as sign.cer / enc.cer here.")
def certs(reader: str | None, psam_reader: str | None, write_sign: Path | None,
          write_enc: Path | None, import_enc_key: Path | None, out_dir: Path | None) -> None:
    """Read the signing and encryption certificates (optionally write them first, after
    external authentication through the PSAM)."""
    from reader_tools.session import card_errors, open_card
    from sscard.x509.pem import pem_to_der

    def load(path: Path) -> bytes:
        raw = path.read_bytes()
        return pem_to_der(raw, "CERTIFICATE") if raw.lstrip().startswith(b"-----") else raw

    from sscard.card.integrity import check_certificate
    from sscard.crypto.envelopes import EnvelopedKey, EnvelopeError

    writes = {"sign": write_sign, "enc": write_enc}
    needs_auth = any(writes.values()) or import_enc_key is not None
    blob = None
    if import_enc_key is not None:
        try:
            blob = EnvelopedKey.from_blob(import_enc_key.read_bytes())
        except EnvelopeError as exc:
            raise click.UsageError(f"{import_enc_key}: {exc}") from None
    with card_errors(), open_card(reader, psam_reader, with_psam=needs_auth) as opened:
        client = opened.client
        # every certificate is checked against the card's own key (or the encryption key
        # about to be imported) and holder before anything is written
        holder_ssn = None
        if any(writes.values()):
            client.select_ssse()  # the card may still be in the PKI application
            holder_ssn = client.read_holder_data().ssn
        for which, path in writes.items():
            if path is not None:
                check_certificate(client, which, load(path), holder_ssn,
                                  blob.public_point if which == "enc" and blob else None)
        if needs_auth:
            client.external_authenticate(KEY_UPDATE, opened.need_psam())
        if blob is not None:
            client.import_enveloped_key(blob)
            click.echo("encryption key pair imported")
        for which, path in writes.items():
            if path is not None:
                client.write_certificate(which, load(path))
        for which in ("sign", "enc"):
            der = client.read_certificate(which)
            if der is None:
                click.echo(f"{which}: (empty)")
                continue
            if writes[which] is not None and der != load(writes[which]):  # type: ignore[arg-type]
                raise click.ClickException(f"{which} certificate read back differs from the "
                                           "one written")
            click.echo(f"{which}: {_cert_summary(der)}")
            if out_dir:
                out_dir.mkdir(parents=True, exist_ok=True)
                (out_dir / f"{which}.cer").write_bytes(der)


# --- personalisation ----------------------------------------------------------------------------


@group.command("write-data")
@reader_options
@click.option("--data", "data_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Holder data as JSON: ssn, name, sex, ethnicity, birthplace, birth_date, "
                   "and card_number to write the card data (EF05) too.")
def write_data(reader: str | None, psam_reader: str | None, data_path: Path) -> None:
    """Write the holder data (EF06), and with a card_number the card data (EF05: card number,
    issued today, valid ten years), after external authentication through the PSAM; the data
    is validated first and read back after."""
    import datetime as dt

    from reader_tools.personalize import CardOrder, card_data
    from reader_tools.session import card_errors, open_card
    from sscard.card import errors
    from sscard.card.codec import CodecError
    from sscard.card.records import HolderData
    from sscard.card.validation import CardDataError, validate_card_number

    try:
        raw = json.loads(data_path.read_text(encoding="utf-8"))
        fields = {k: str(raw[k]) for k in ("ssn", "name", "sex", "ethnicity", "birthplace",
                                           "birth_date")}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"{data_path} is not valid JSON: {exc}") from None
    except KeyError as exc:
        raise click.UsageError(f"{data_path} lacks the field {exc.args[0]}") from None
    except TypeError:
        raise click.UsageError(f"{data_path} must hold a JSON object") from None
    holder = HolderData(**fields)
    number = None if raw.get("card_number") is None else str(raw["card_number"])
    try:
        holder.validate()
        if number is not None:
            validate_card_number(number)
    except (CardDataError, CodecError) as exc:
        raise click.UsageError(f"invalid holder data: {exc}") from None
    from sscard.card.integrity import certificate_ssn, snapshot

    with card_errors(), open_card(reader, psam_reader, with_psam=True) as opened:
        found = snapshot(opened.client)
        named = {certificate_ssn(der) for der in found.certificates.values()} - {None}
        if named and named != {holder.ssn}:
            raise errors.CardMismatch(
                f"refused: {found.describe()} naming {', '.join(sorted(map(str, named)))}; "
                f"holder data for {holder.ssn} would contradict its certificates (roll the "
                "card back or clear them first)")
        card = None
        current = opened.client.read_card_data() if number is not None else None
        if current is not None and current.card_number and current.card_number != number:
            # a card keeps its number: the RA issued its certificates for that number
            raise errors.CardMismatch(
                f"refused: the card already has card number {current.card_number}, not "
                f"{number}; nothing was written")
        if current is not None and number is not None and not current.card_number:
            card = card_data(current.card_id, CardOrder(holder, number),
                             current.region_code, dt.date.today())
            card.validate()
        opened.client.select_ssse()
        opened.client.external_authenticate(KEY_UPDATE, opened.need_psam())
        if card is not None:
            opened.client.write_card_data(card)
        opened.client.write_holder_data(holder)
        back = opened.client.read_holder_data()
        card_back = opened.client.read_card_data() if card is not None else None
    if back != holder or card_back != card:
        raise click.ClickException("card data read back differs from what was written")
    if card is not None:
        click.echo(f"card data written and read back: card number {card.card_number}, valid "
                   f"{card.issue_date}-{card.expiry_date}")
    elif number is not None:
        click.echo(f"card data already on the card: card number {number} (kept as it is)")
    click.echo(f"holder data written and read back: {holder.ssn} {holder.name}")


@group.command("selftest")
@reader_options
def selftest(reader: str | None, psam_reader: str | None) -> None:
    """Non-destructive checks: card data valid, card genuine (internal authentication through
    the PSAM), PKI application present, on-card public key usable."""
    from reader_tools.session import card_errors, open_card
    from sscard.card import errors
    from sscard.card.client import pki_pin_ctk
    from sscard.card.codec import CodecError
    from sscard.card.integrity import certificate_problem
    from sscard.card.validation import CardDataError
    from sscard.crypto.sm2 import SM2PublicKey

    failures = 0

    def report(name: str, ok: bool, detail: str = "") -> None:
        nonlocal failures
        failures += 0 if ok else 1
        click.echo(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")

    report("PKI PIN CTK check value (CARD_SPEC §4)",
           pki_pin_ctk("123456").hex().upper() == "3DE741F445DD357BEA4E6C3FE6437036")
    with card_errors(), open_card(reader, psam_reader, with_psam=True) as opened:
        client = opened.client
        data = client.read_info()
        try:
            data.card.validate()
            data.holder.validate()
            report("card and holder data", True, f"{data.holder.ssn} {data.card.card_number}")
        except (CardDataError, CodecError) as exc:
            report("card and holder data", False, str(exc))
        try:
            client.internal_authenticate(opened.need_psam())
            report("internal authentication (card genuine)", True)
        except errors.CardError as exc:
            report("internal authentication (card genuine)", False, str(exc))
        if data.card.spec_version >= "3.00":
            try:
                point = client.public_point()
                SM2PublicKey.from_point(point)
                report("PKI application: signing public key", True, point[:9].hex() + "...")
            except errors.KeyNotFound:
                report("PKI application: signing public key", True, "no key generated yet")
            except errors.CardError as exc:
                report("PKI application: signing public key", False, str(exc))
            for which, what in (("sign", "signing"), ("enc", "encryption")):
                name = f"{what} certificate (the card's key, its holder)"
                der = client.read_certificate(which)
                if der is None:
                    report(name, True, "none on the card")
                    continue
                problem = certificate_problem(client, which, der, data.holder.ssn)
                report(name, problem is None, problem or _cert_summary(der))
        tries = client.pin_tries_left()
        report("PIN try counter", tries != 0, f"{tries} tries left" if tries >= 0 else "")
    if failures:
        raise click.ClickException(f"{failures} check(s) failed")
