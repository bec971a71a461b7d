"""``sscard audit ...``: verify, show, checkpoint, prove, and make an audit key.

``verify`` exits 0 when the log is intact, 1 when it found tampering (each finding on its own
line), 2 when the input cannot be used (no log, unreadable certificate or checkpoint file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from sscard.audit.actions import ZONES
from sscard.audit.errors import AuditError, AuditLogUnusable, CheckpointError
from sscard.cli import AUDIT_DB_URL_ENV, UnusableInput, data_home, db_url_options
from sscard.crypto.errors import CryptoError
from sscard.exitcodes import Exit
from sscard.secrets_input import read_secret
from sscard.x509.errors import X509Error

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from sscard.audit.checkpoint import Checkpoint
    from sscard.audit.log import AuditLog
    from sscard.crypto.asymmetric import PublicKey

EXIT_INTACT, EXIT_TAMPERED, EXIT_UNUSABLE = Exit.OK, Exit.REFUSED, Exit.USAGE
#: sscard.audit.records.OUTCOMES, written out so that the option's choices do not load the crypto
#: stack at start-up (tests/cli/test_startup.py holds them to the records module)
OUTCOMES = ("attempt", "success", "failure", "denied", "error", "info")


def _unusable(message: str) -> NoReturn:
    raise UnusableInput(message)


def _url(ctx: click.Context, db: str | None) -> str:
    from sscard.audit.log import default_url

    return db or default_url(data_home(ctx))


def _existing_engine(url: str) -> Engine:
    """An engine for a log that must already exist: SQLite would create an empty file."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from sscard.audit.log import make_engine

    try:
        parsed = make_url(url)
    except ArgumentError:
        _unusable(f"not a database URL: {url!r}")
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            _unusable("an in-memory SQLite database holds no audit log")
        if not Path(parsed.database).is_file():
            _unusable(f"no audit database at {parsed.database}")
    try:
        return make_engine(url)
    except (ArgumentError, ImportError) as exc:
        _unusable(f"cannot use database {parsed.render_as_string(hide_password=True)}: {exc}")


def _open_log(url: str, **kwargs: Any) -> AuditLog:
    from sqlalchemy.exc import SQLAlchemyError

    from sscard.audit.log import AuditLog

    try:
        return AuditLog(_existing_engine(url), create=False, **kwargs)
    except (AuditError, SQLAlchemyError) as exc:
        _unusable(str(exc))


def _read_cert(path: Path) -> tuple[bytes, PublicKey]:
    from sscard.crypto.asymmetric import PublicKey
    from sscard.x509.parse import load_certificate

    try:
        cert = load_certificate(path.read_bytes())
        key = PublicKey.from_spki(cert["tbs_certificate"]["subject_public_key_info"].dump())
    except OSError as exc:
        _unusable(f"cannot read certificate {path}: {exc.strerror}")
    except (X509Error, CryptoError, ValueError) as exc:
        _unusable(f"audit certificate {path}: {exc}")
    return bytes(cert.dump()), key


def _read_checkpoint(path: Path) -> Checkpoint:
    from sscard.audit.checkpoint import Checkpoint

    try:
        return Checkpoint.from_json(path.read_bytes())
    except OSError as exc:
        _unusable(f"cannot read checkpoint {path}: {exc.strerror}")
    except CheckpointError as exc:
        _unusable(f"checkpoint {path}: {exc}")


db_option = db_url_options(AUDIT_DB_URL_ENV, "audit database (default: DIR/audit.sqlite under "
                           "--home)", dest="db", aliases=("--db",))


@click.group("audit")
def group() -> None:
    """The tamper-evident audit log: verify, show, checkpoint, prove."""


@group.command("verify")
@db_option
@click.option("--cert", "cert_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Audit certificate (PEM or DER): the trust anchor for checkpoint signatures.")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A copy of a checkpoint kept outside the log (from 'audit checkpoint --out').")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def verify_cmd(ctx: click.Context, db: str | None, cert_path: Path | None,
               checkpoint_path: Path | None, as_json: bool) -> None:
    """Recompute the chain and the tree, check every checkpoint; exit 0 intact, 1 tampered,
    2 unusable input."""
    from sscard.audit.verify import verify_log

    url = _url(ctx, db)
    engine = _existing_engine(url)
    anchor = _read_cert(cert_path)[1] if cert_path else None
    external = _read_checkpoint(checkpoint_path) if checkpoint_path else None
    try:
        report = verify_log(engine, public_key=anchor, external_checkpoint=external)
    except AuditLogUnusable as exc:
        _unusable(str(exc))
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({
            "intact": report.intact, "records": report.records,
            "checkpoints": report.checkpoints, "hash": report.hash_name, "log": report.log_id,
            "findings": [{"kind": f.kind, "seq": f.seq, "message": f.message}
                         for f in report.findings],
            "notes": report.notes,
        }, ensure_ascii=False, indent=2))
    else:
        for f in report.findings:
            click.echo(str(f))
        for note in report.notes:
            click.echo(f"note: {note}")
        state = "intact" if report.intact else f"TAMPERED ({len(report.findings)} finding(s))"
        click.echo(f"audit log {report.log_id}: {report.records} records, "
                   f"{report.checkpoints} checkpoints, {report.hash_name}: {state}")
    sys.exit(EXIT_INTACT if report.intact else EXIT_TAMPERED)


@group.command("show")
@db_option
@click.option("--from", "start", type=click.IntRange(min=1), default=1, show_default=True,
              help="First record (sequence number) to show.")
@click.option("--to", "end", type=click.IntRange(min=1), default=None,
              help="Last record to show (default: the newest).")
@click.option("--action", "actions", multiple=True, metavar="PREFIX",
              help="Only actions equal to or under this name: 'ca', 'ca.certificate', "
                   "'kmc.recovery.approve' (repeatable).")
@click.option("--actor", default=None, help="Only records by this actor.")
@click.option("--object", "obj", default=None, help="Only records about this object.")
@click.option("--outcome", type=click.Choice(OUTCOMES), default=None,
              help="Only records with this outcome.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: one JSON object a line.")
@click.option("--json", "as_json", is_flag=True, hidden=True, help="The same as --format json.")
@click.pass_context
def show_cmd(ctx: click.Context, db: str | None, start: int, end: int | None,
             actions: tuple[str, ...], actor: str | None, obj: str | None,
             outcome: str | None, fmt: str, as_json: bool) -> None:
    """List records (``--from``/``--to`` sequence numbers), filtered by action, actor, object
    or outcome."""
    from sqlalchemy.exc import SQLAlchemyError

    for name in actions:
        zone = name.split(".", 1)[0]
        if zone not in ZONES:
            raise click.BadParameter(f"{name!r}: actions start with one of {', '.join(ZONES)}",
                                     param_hint="--action")
    as_json = as_json or fmt == "json"
    log = _open_log(_url(ctx, db))
    try:
        for rec in log.records(start, end, actions=actions, actor=actor, obj=obj,
                               outcome=outcome):
            r = rec.record
            if as_json:
                click.echo(json.dumps({"seq": rec.seq, **r.as_dict(), "hash": rec.hash.hex()},
                                      ensure_ascii=False, sort_keys=True))
            else:
                details = r.details_json() if r.details else ""
                click.echo(f"{rec.seq:>8} {r.time} {r.outcome:<8} {r.actor} {r.action} "
                           f"{r.object} {r.request_id} {details}".rstrip())
    except (ValueError, SQLAlchemyError) as exc:
        _unusable(f"cannot read the records: {exc} (run 'sscard audit verify')")
    finally:
        log.engine.dispose()


@group.command("checkpoint")
@db_option
@click.option("--key", "key_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The audit signing key (encrypted PKCS#8).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File (mode 0600) whose first line is the signing key's passphrase.")
@click.option("--passphrase-stdin", is_flag=True, help="Read the passphrase from stdin.")
@click.option("--cert", "cert_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Audit certificate to store with the checkpoint.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the checkpoint here (keep it away from the database).")
@click.pass_context
def checkpoint_cmd(ctx: click.Context, db: str | None, key_path: Path,
                   passphrase_file: Path | None, passphrase_stdin: bool, cert_path: Path | None,
                   out: Path | None) -> None:
    """Sign a checkpoint of the whole log now."""
    from sscard.keys.software import SoftwareKey

    url = _url(ctx, db)
    passphrase = read_secret(file=passphrase_file, from_stdin=passphrase_stdin,
                             prompt="Audit key passphrase")
    try:
        key = SoftwareKey.load(key_path, passphrase)
    except CryptoError as exc:
        _unusable(f"audit key {key_path}: {exc}")
    cert = _read_cert(cert_path)[0] if cert_path else None
    try:
        log = _open_log(url, signer=key, certificate=cert)
    except ValueError as exc:
        _unusable(str(exc))
    try:
        cp = log.checkpoint()
    except AuditError as exc:
        _unusable(str(exc))
    finally:
        log.engine.dispose()
    if out:
        out.write_text(cp.to_json(), encoding="utf-8")
    click.echo(f"checkpoint {cp.index}: size {cp.tree_size} root {cp.root.hex()}")


@group.command("prove")
@db_option
@click.option("--seq", required=True, type=click.IntRange(min=1), help="The record to prove.")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Prove against this checkpoint (default: the latest stored one).")
@click.option("--cert", "cert_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Audit certificate to check the checkpoint's signature with (default: the "
                   "key stored with the checkpoint).")
@click.pass_context
def prove_cmd(ctx: click.Context, db: str | None, seq: int, checkpoint_path: Path | None,
              cert_path: Path | None) -> None:
    """Print an inclusion proof of record SEQ in a signed checkpoint, and check both the proof
    and the checkpoint's signature (exit 1 if either fails)."""
    from sscard.crypto.asymmetric import PublicKey

    anchor = _read_cert(cert_path)[1] if cert_path else None
    log = _open_log(_url(ctx, db))
    try:
        cp = _read_checkpoint(checkpoint_path) if checkpoint_path else log.latest_checkpoint()
        if cp is None:
            _unusable("the log has no checkpoint yet ('sscard audit checkpoint')")
        if seq > cp.tree_size:
            _unusable(f"record {seq} is after checkpoint {cp.index} (size {cp.tree_size})")
        proof = log.inclusion_proof(seq, cp.tree_size)
    except AuditError as exc:
        _unusable(str(exc))
    finally:
        log.engine.dispose()
    included = proof.verify(cp.root)
    try:
        signed = cp.verify(anchor or PublicKey.from_spki(cp.signer_spki))
    except CryptoError:
        signed = False
    click.echo(json.dumps({
        "seq": seq, "leaf_index": seq - 1, "tree_size": proof.tree_size, "hash": proof.hash_name,
        "entry": proof.entry.hex(), "path": [p.hex() for p in proof.path],
        "checkpoint": cp.index, "root": cp.root.hex(), "verified": included,
        "checkpoint_signature": "valid" if signed else "INVALID",
        "signature_checked_with": "certificate" if anchor else "key stored in the checkpoint",
    }, indent=2))
    sys.exit(EXIT_INTACT if included and signed else EXIT_TAMPERED)


@group.command("keygen")
@click.option("--key-out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the new signing key (encrypted PKCS#8, mode 0600).")
@click.option("--cert-out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write its self-signed audit certificate (PEM).")
@click.option("--subject", default="CN=Audit Log Signing,C=CN", show_default=True,
              help="The certificate's subject name.")
@click.option("--algorithm", default="sm2", show_default=True,
              help="Key algorithm (as sscard key generate names them).")
@click.option("--days", type=click.IntRange(min=1), default=3650, show_default=True,
              help="Days the certificate is valid.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File (mode 0600) whose first line is the new key's passphrase.")
@click.option("--passphrase-stdin", is_flag=True,
              help="Read the new key's passphrase from stdin.")
def keygen_cmd(key_out: Path, cert_out: Path, subject: str, algorithm: str, days: int,
               passphrase_file: Path | None, passphrase_stdin: bool) -> None:
    """Make an audit signing key (encrypted) and a self-signed audit certificate for it.

    In production the audit certificate would rather be issued by the CA; either works as the
    anchor given to 'audit verify --cert'."""
    from sscard.audit.scheduled import make_audit_key
    from sscard.x509.pem import der_to_pem

    passphrase = read_secret(file=passphrase_file, from_stdin=passphrase_stdin,
                             prompt="New audit key passphrase", confirm=True)
    try:
        key, cert = make_audit_key(algorithm, subject, days)
    except (ValueError, CryptoError, X509Error) as exc:
        raise click.BadParameter(str(exc)) from None
    key.store(key_out, passphrase)
    cert_out.write_bytes(der_to_pem(cert, "CERTIFICATE"))
    click.echo(f"audit key {key_out}, certificate {cert_out}")
