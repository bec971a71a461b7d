"""``sscard kmc ...``: the key management centre's command line.

Commands translate between files and ``keymgmt``'s library calls; a refused operation ends with
exit status 1 and the reason. Secrets (custodian passphrases, the token PIN, API keys) come from
files or prompts, never from argv. Commands that need the storage key take the custodians'
shares: ``--share FILE`` once per custodian present, with ``--share-passphrase-file`` in the
same order or, without it, each custodian typing their passphrase at the prompt.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from keymgmt.errors import KmcError
from sscard.cli import (
    AUDIT_DB_URL_ENV,
    data_home,
    db_url_options,
    echo_json,
    format_option,
    open_audit_log,
)
from sscard.cli import audit_url as resolve_audit_url
from sscard.secrets_input import read_secret
from sscard.serving import ServeOptions, run, serve_options

F = TypeVar("F", bound=Callable[..., Any])
_FILE = click.Path(dir_okay=False, path_type=Path)


@click.group("kmc")
@db_url_options("SSCARD_KMC_DB_URL", "KMC database (default: SQLite <home>/kmc.db)")
@click.pass_context
def group(ctx: click.Context, db_url: str | None) -> None:
    """Key management centre: ceremony, escrow, recovery, card master keys."""
    ctx.meta["kmc_db_url"] = db_url


def _home(ctx: click.Context) -> Path:
    return data_home(ctx)


def _audit(ctx: click.Context) -> Any:
    """The audit log the KMC records in (closed with the command)."""
    log = open_audit_log(ctx)
    ctx.call_on_close(log.engine.dispose)
    return log


def _db_url(ctx: click.Context) -> str:
    from keymgmt.db import default_url

    url: str | None = ctx.meta.get("kmc_db_url")
    if url:
        return url
    home = _home(ctx)
    home.mkdir(parents=True, exist_ok=True)
    return default_url(home)


def local_actor() -> str:
    """Who runs this command, for the audit record (imported here: the audit package loads
    SQLAlchemy, which ``sscard kmc --help`` does not need)."""
    from sscard.audit import local_actor as actor

    return actor()


def _kmc_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sscard.audit import AuditError

        try:
            return func(*args, **kwargs)
        except KmcError as exc:
            raise click.ClickException(str(exc)) from None
        except AuditError as exc:
            # no record, no operation: the KMC refused to act without its audit record
            raise click.ClickException(f"audit log: {exc}") from None

    return wrapper  # type: ignore[return-value]


def _share_options(func: F) -> F:
    func = click.option("--share-passphrase-file", "share_passphrase_files", multiple=True,
                        type=_FILE, help="Passphrase file for each --share, in the same order "
                        "(default: each custodian types it).")(func)
    func = click.option("--share", "shares", multiple=True, type=_FILE,
                        help="A custodian's share file; repeat for each custodian present.")(func)
    return func


def _read_shares(shares: tuple[Path, ...], passphrase_files: tuple[Path, ...]) -> list[Any]:
    """The custodians' shares, each opened with its passphrase (file or prompt)."""
    from keymgmt import ceremony

    if not shares:
        raise click.UsageError("the storage key is needed: give the custodians' --share files")
    if passphrase_files and len(passphrase_files) != len(shares):
        raise click.UsageError("give one --share-passphrase-file per --share, or none")
    return ceremony.read_share_files([
        (path, read_secret(file=passphrase_files[i] if passphrase_files else None,
                           prompt=f"Passphrase for share {path.name}"))
        for i, path in enumerate(shares)])


def _unseal_given(ctx: click.Context, given: list[Any]) -> Any:
    from keymgmt import ceremony

    return ceremony.unseal(_home(ctx), given, actor=local_actor(), audit=_audit(ctx))


def _unseal(ctx: click.Context, shares: tuple[Path, ...],
            passphrase_files: tuple[Path, ...]) -> Any:
    return _unseal_given(ctx, _read_shares(shares, passphrase_files))


def _open(ctx: click.Context, storage_key: Any = None) -> Any:
    from keymgmt.service import KeyManagementCentre

    return KeyManagementCentre.open(_db_url(ctx), storage_key, audit=_audit(ctx))


def _principal(kmc: Any, api_key_file: Path) -> Any:
    return kmc.authenticate(read_secret(file=api_key_file, prompt="API key").decode())


# -- ceremony -------------------------------------------------------------------------------

@group.command("ceremony")
@click.option("--custodian", "custodians", multiple=True, required=True,
              help="A custodian's name; repeat for each (N custodians).")
@click.option("--threshold", type=int, required=True, help="M: custodians needed to unseal.")
@click.option("--shares-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where each custodian's share file is written (one file each).")
@click.option("--custodian-passphrase-file", "passphrase_files", multiple=True, type=_FILE,
              help="Passphrase file per custodian, same order (default: each types it twice).")
@click.option("--pkcs11-module", default=None, help="Generate the storage key in this HSM.")
@click.option("--token-label", default=None, help="The HSM token for the storage key.")
@click.option("--admin-pin-file", type=_FILE, default=None,
              help="The token's current user PIN (the ceremony replaces it).")
@click.option("--root-ca-key", "root_ca_algorithm", default=None,
              help="Also generate the root CA key (sm2, ec-p256, rsa3072, ...).")
@click.option("--root-ca-passphrase-file", type=_FILE, default=None,
              help="Passphrase for the root CA key file (default: prompt).")
@click.option("--root-ca-token", default=None,
              help="Generate the root CA key in this PKCS#11 token instead of a file.")
@click.option("--root-ca-module", default=None,
              help="PKCS#11 module of --root-ca-token (default: --pkcs11-module).")
@click.option("--root-ca-pin-file", type=_FILE, default=None,
              help="User PIN of --root-ca-token (default: prompt).")
@click.option("--officiant", default="administrator", help="Who runs the ceremony (for the log).")
@click.pass_context
@_kmc_errors
def ceremony_cmd(ctx: click.Context, custodians: tuple[str, ...], threshold: int,
                 shares_dir: Path, passphrase_files: tuple[Path, ...],
                 pkcs11_module: str | None, token_label: str | None,
                 admin_pin_file: Path | None, root_ca_algorithm: str | None,
                 root_ca_passphrase_file: Path | None, root_ca_token: str | None,
                 root_ca_module: str | None, root_ca_pin_file: Path | None,
                 officiant: str) -> None:
    """Create the KMC storage key under M-of-N custodians (and optionally the root CA key)."""
    from keymgmt import ceremony

    if passphrase_files and len(passphrase_files) != len(custodians):
        raise click.UsageError("give one --custodian-passphrase-file per --custodian, or none")
    people = []
    for i, name in enumerate(custodians):
        secret = read_secret(file=passphrase_files[i] if passphrase_files else None,
                             prompt=f"Passphrase of custodian {name}", confirm=True)
        people.append(ceremony.Custodian(name, secret))
    target = None
    if pkcs11_module or token_label:
        if not (pkcs11_module and token_label):
            raise click.UsageError("--pkcs11-module and --token-label go together")
        target = ceremony.Pkcs11Target(pkcs11_module, token_label,
                                       read_secret(file=admin_pin_file, prompt="Token user PIN"))
    root = None
    if root_ca_token and not root_ca_algorithm:
        raise click.UsageError("--root-ca-token needs --root-ca-key ALGORITHM")
    if root_ca_algorithm and root_ca_token:
        module = root_ca_module or pkcs11_module
        if not module:
            raise click.UsageError("--root-ca-token needs --root-ca-module or --pkcs11-module")
        root = ceremony.RootCaKeyRequest(
            root_ca_algorithm, hsm_module=module, hsm_token=root_ca_token,
            hsm_pin=read_secret(file=root_ca_pin_file, prompt="Root CA token PIN"))
    elif root_ca_algorithm:
        root = ceremony.RootCaKeyRequest(
            root_ca_algorithm,
            read_secret(file=root_ca_passphrase_file, prompt="Root CA key passphrase",
                        confirm=True))
    result = ceremony.run_ceremony(_home(ctx), people, threshold, shares_dir,
                                   pkcs11_target=target, root_ca=root, officiant=officiant,
                                   audit=_audit(ctx))
    click.echo(f"ceremony {result.ceremony_id}: storage key {result.storage_key_id} "
               f"({result.backend}), {threshold} of {len(custodians)} custodians")
    for name, path in result.share_files.items():
        click.echo(f"  share of {name}: {path}")
    if result.root_ca_key is not None:
        click.echo(f"  root CA key: {result.root_ca_key} (public key {result.root_ca_public_key})")
    elif result.root_ca_public_key is not None:
        click.echo(f"  root CA key: in token {root_ca_token!r}, label 'root-ca' "
                   f"(public key {result.root_ca_public_key})")
    click.echo(f"  log: {ceremony.log_path(_home(ctx))}")


@group.command("unseal")
@_share_options
@click.pass_context
@_kmc_errors
def unseal_cmd(ctx: click.Context, shares: tuple[Path, ...],
               share_passphrase_files: tuple[Path, ...]) -> None:
    """Check that these custodians' shares open the storage key (a recovery drill)."""
    key = _unseal(ctx, shares, share_passphrase_files)
    try:
        click.echo(f"storage key {key.key_id} opened with {len(shares)} share(s)")
    finally:
        key.close()


@group.command("ceremony-log")
@click.pass_context
@_kmc_errors
def ceremony_log_cmd(ctx: click.Context) -> None:
    """Verify the ceremony log's hash chain and print it."""
    from keymgmt import ceremony, ceremony_log

    path = ceremony.log_path(_home(ctx))
    count = ceremony_log.verify(path)
    for entry in ceremony_log.read(path):
        click.echo(f"{entry['seq']:4d} {entry['time']} {entry['event']} "
                   f"{json.dumps(entry['details'], ensure_ascii=False)}")
    click.echo(f"{count} entries, chain intact")


# -- callers --------------------------------------------------------------------------------

@group.group("caller")
def caller_group() -> None:
    """Callers of the KMC service (CA, RA, officers, auditors, terminals)."""


def _terminal_binding_options(func: F) -> F:
    func = click.option("--region", "regions", multiple=True,
                        help="Terminal: a region code prefix (2, 4 or 6 digits) it serves; "
                             "repeatable.")(func)
    func = click.option("--terminal-id", default=None,
                        help="Terminal: the terminal / PSAM number it must name.")(func)
    func = click.option("--rate", type=click.IntRange(1, 10_000), default=120,
                        show_default=True,
                        help="Terminal: card-key answers per minute.")(func)
    return func


@caller_group.command("add")
@click.argument("name")
@click.option("--role", required=True,
              type=click.Choice(["ca", "ra", "officer", "auditor", "terminal"]),
              help="What the caller may do at the KMC.")
@click.option("--key-out", type=_FILE, default=None,
              help="Write the API key to this file (mode 0600) instead of printing it.")
@click.option("--certificate", "certificate_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A service identity: the caller signs its requests with this certificate's "
                   "key (PEM or DER) and gets no API key.")
@_terminal_binding_options
@click.pass_context
@_kmc_errors
def caller_add(ctx: click.Context, name: str, role: str, key_out: Path | None,
               certificate_file: Path | None, regions: tuple[str, ...],
               terminal_id: str | None, rate: int) -> None:
    """Register a caller; its API key is shown (or written) once and stored only hashed.
    A terminal is bound to its regions (--region, required) and optionally its terminal id."""
    from sscard.x509.pem import pem_to_der

    if role == "terminal" and not regions:
        raise click.UsageError("a terminal is bound to its region(s): give --region")
    if role != "terminal" and (regions or terminal_id):
        raise click.UsageError("--region and --terminal-id bind terminals only")
    certificate = (pem_to_der(certificate_file.read_bytes(), "CERTIFICATE")
                   if certificate_file is not None else None)
    reserved = _reserve_key_file(key_out) if key_out is not None and certificate is None else None
    kmc = _open(ctx)
    try:
        if certificate is not None:
            kmc.add_service_caller(name, role, certificate, by=local_actor())
        else:
            api_key = kmc.add_caller(name, role, by=local_actor())
        if role == "terminal":
            from keymgmt.cardkeys import CardKeyService

            CardKeyService(kmc).bind_terminal(name, list(regions), terminal_id=terminal_id,
                                              rate_per_minute=rate, by=local_actor())
    except BaseException:
        if reserved is not None:
            os.close(reserved)
            assert key_out is not None
            key_out.unlink(missing_ok=True)
        raise
    finally:
        kmc.close()
    if certificate is not None:
        click.echo(f"caller {name} ({role}): signs its requests with {certificate_file}")
        return
    if reserved is not None:
        with os.fdopen(reserved, "w") as fh:
            fh.write(api_key + "\n")
        click.echo(f"caller {name} ({role}): API key written to {key_out}")
    else:
        click.echo(api_key)


def _reserve_key_file(path: Path) -> int:
    """The --key-out file, created empty (mode 0600) before the caller is: an existing file or
    a directory that cannot take it is refused while nothing has been registered yet (the API
    key is shown once; a caller whose key could not be written would be lost)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.BadParameter(f"{path} exists; the API key is written only to a new file "
                                 "(nothing was registered)", param_hint="--key-out") from None
    except OSError as exc:
        raise click.BadParameter(f"cannot create {path}: {exc.strerror} (nothing was "
                                 "registered)", param_hint="--key-out") from None


@caller_group.command("bind")
@click.argument("name")
@_terminal_binding_options
@click.pass_context
@_kmc_errors
def caller_bind(ctx: click.Context, name: str, regions: tuple[str, ...],
                terminal_id: str | None, rate: int) -> None:
    """Bind terminal NAME to its region(s), terminal id and rate (replaces its binding)."""
    from keymgmt.cardkeys import CardKeyService

    if not regions:
        raise click.UsageError("give at least one --region")
    kmc = _open(ctx)
    try:
        binding = CardKeyService(kmc).bind_terminal(name, list(regions),
                                                    terminal_id=terminal_id,
                                                    rate_per_minute=rate, by=local_actor())
    finally:
        kmc.close()
    click.echo(f"terminal {name}: regions {', '.join(binding.regions)}, terminal id "
               f"{binding.terminal_id or 'any'}, {binding.rate_per_minute} answers per minute")


@caller_group.command("deactivate")
@click.argument("name")
@click.pass_context
@_kmc_errors
def caller_deactivate(ctx: click.Context, name: str) -> None:
    """Deactivate the caller NAME: its credentials are refused from now on."""
    kmc = _open(ctx)
    try:
        kmc.deactivate_caller(name, by=local_actor())
    finally:
        kmc.close()
    click.echo(f"caller {name} deactivated")


# -- recovery (officers acting with their own API keys) ---------------------------------------

@group.group("recovery")
def recovery_group() -> None:
    """Key recovery under dual control; each officer acts with their own --api-key-file."""


def _api_key_option(func: F) -> F:
    return click.option("--api-key-file", type=_FILE, required=True,
                        help="File holding your KMC API key.")(func)


@recovery_group.command("request")
@_api_key_option
@click.option("--key-id", default=None, help="The escrowed key to recover, by its key id.")
@click.option("--certificate-serial", default=None, help="Hex serial of the encryption cert.")
@click.option("--owner", default=None, help="The cardholder (social security number).")
@click.option("--card-public-key", type=_FILE, default=None,
              help="New card's SM2 signing public key (PEM or DER SubjectPublicKeyInfo).")
@click.option("--officer", default=None, help="Recover as PKCS#12 for this officer.")
@click.option("--reason", required=True,
              help="Why the key is to be recovered (recorded with the request).")
@click.option("--judicial-authority", default=None,
              help="For a judicial recovery: the authority that issued the order.")
@click.option("--judicial-order-ref", default=None,
              help="For a judicial recovery: the order's reference.")
@click.option("--judicial-order-file", type=_FILE, default=None,
              help="The scanned order; its SHA-256 is recorded.")
@click.pass_context
@_kmc_errors
def recovery_request(ctx: click.Context, api_key_file: Path, key_id: str | None,
                     certificate_serial: str | None, owner: str | None,
                     card_public_key: Path | None, officer: str | None, reason: str,
                     judicial_authority: str | None, judicial_order_ref: str | None,
                     judicial_order_file: Path | None) -> None:
    """Ask for an escrowed key to be recovered (needs two other officers' approval)."""
    import hashlib

    from keymgmt.service import CardRecipient, JudicialOrder, OfficerRecipient
    from sscard.x509.pem import pem_to_der

    recipient: CardRecipient | OfficerRecipient
    if (card_public_key is None) == (officer is None):
        raise click.UsageError("give exactly one of --card-public-key or --officer")
    if card_public_key is not None:
        recipient = CardRecipient(pem_to_der(card_public_key.read_bytes()))
    else:
        recipient = OfficerRecipient(officer or "")
    judicial = None
    if judicial_authority or judicial_order_ref or judicial_order_file:
        if not (judicial_authority and judicial_order_ref and judicial_order_file):
            raise click.UsageError("judicial recovery needs --judicial-authority, "
                                   "--judicial-order-ref and --judicial-order-file")
        judicial = JudicialOrder(judicial_authority, judicial_order_ref,
                                 hashlib.sha256(judicial_order_file.read_bytes()).hexdigest())
    kmc = _open(ctx)
    try:
        info = kmc.request_recovery(_principal(kmc, api_key_file), recipient=recipient,
                                    reason=reason, key_id=key_id,
                                    certificate_serial=certificate_serial, owner=owner,
                                    judicial=judicial)
    finally:
        kmc.close()
    click.echo(json.dumps(info, ensure_ascii=False, indent=2))


@recovery_group.command("approve")
@_api_key_option
@click.argument("request_id")
@click.option("--comment", default="", help="Note recorded with the approval.")
@click.pass_context
@_kmc_errors
def recovery_approve(ctx: click.Context, api_key_file: Path, request_id: str,
                     comment: str) -> None:
    """Approve the recovery request REQUEST_ID (two officers other than the requester must)."""
    kmc = _open(ctx)
    try:
        info = kmc.approve(_principal(kmc, api_key_file), request_id, comment)
    finally:
        kmc.close()
    click.echo(json.dumps(info, ensure_ascii=False, indent=2))


@recovery_group.command("reject")
@_api_key_option
@click.argument("request_id")
@click.option("--comment", required=True, help="Why it is rejected (recorded).")
@click.pass_context
@_kmc_errors
def recovery_reject(ctx: click.Context, api_key_file: Path, request_id: str,
                    comment: str) -> None:
    """Reject the recovery request REQUEST_ID."""
    kmc = _open(ctx)
    try:
        info = kmc.reject(_principal(kmc, api_key_file), request_id, comment)
    finally:
        kmc.close()
    click.echo(json.dumps(info, ensure_ascii=False, indent=2))


@recovery_group.command("complete")
@_api_key_option
@click.argument("request_id")
@click.option("--out", type=_FILE, required=True,
              help="Where to write the result: the ENVELOPEDKEYBLOB (card) or the PKCS#12.")
@_share_options
@click.pass_context
@_kmc_errors
def recovery_complete(ctx: click.Context, api_key_file: Path, request_id: str, out: Path,
                      shares: tuple[Path, ...], share_passphrase_files: tuple[Path, ...]) -> None:
    """Collect an approved recovery (the storage key is needed: custodians' shares)."""
    kmc = _open(ctx, _unseal(ctx, shares, share_passphrase_files))
    try:
        result = kmc.complete_recovery(_principal(kmc, api_key_file), request_id)
    finally:
        kmc.close()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(result.pkcs12 or result.enveloped_key_blob or b"")
    if result.pkcs12 is not None:
        click.echo(f"PKCS#12 written to {out}")
        click.echo(f"one-time passphrase (shown once, not stored): {result.pkcs12_passphrase}")
    else:
        assert result.enveloped_key_der is not None
        der_out = out.with_name(out.name + ".sm2envelopedkey.der")
        der_out.write_bytes(result.enveloped_key_der)
        click.echo(f"ENVELOPEDKEYBLOB written to {out}, SM2EnvelopedKey to {der_out}")


@recovery_group.command("status")
@_api_key_option
@click.argument("request_id")
@click.pass_context
@_kmc_errors
def recovery_status(ctx: click.Context, api_key_file: Path, request_id: str) -> None:
    """Show the state of the recovery request REQUEST_ID (JSON)."""
    kmc = _open(ctx)
    try:
        info = kmc.recovery_status(_principal(kmc, api_key_file), request_id)
    finally:
        kmc.close()
    click.echo(json.dumps(info, ensure_ascii=False, indent=2))


# -- card master keys -----------------------------------------------------------------------

@group.group("cardkeys")
def cardkeys_group() -> None:
    """Card master keys (SM4, 3DES), PSAM export."""


@cardkeys_group.command("generate")
@click.option("--province", required=True, help="2-digit province code.")
@click.option("--algorithm", "algorithms", multiple=True, type=click.Choice(["sm4", "3des"]),
              help="Default: both.")
@_share_options
@click.pass_context
@_kmc_errors
def cardkeys_generate(ctx: click.Context, province: str, algorithms: tuple[str, ...],
                      shares: tuple[Path, ...], share_passphrase_files: tuple[Path, ...]) -> None:
    """Generate the provincial card master keys; prints their check values."""
    from keymgmt.cardkeys import CardKeyService

    kmc = _open(ctx, _unseal(ctx, shares, share_passphrase_files))
    try:
        kcvs = CardKeyService(kmc).generate_master_keys(province, list(algorithms) or None)
    finally:
        kmc.close()
    for name, kcv in kcvs.items():
        click.echo(f"{name}: KCV {kcv}")


@cardkeys_group.command("list")
@format_option
@click.pass_context
@_kmc_errors
def cardkeys_list(ctx: click.Context, output_format: str) -> None:
    """List the card master keys (province, id, usage, algorithm, version, KCV)."""
    from keymgmt.cardkeys import CardKeyService

    kmc = _open(ctx)
    try:
        keys = list(CardKeyService(kmc).list_master_keys())
    finally:
        kmc.close()
    if output_format == "json":
        echo_json(keys)
        return
    for k in keys:
        click.echo(f"{k['province']} {k['key_id']} {k['usage']:14} {k['algorithm']:4} "
                   f"v{k['version']} KCV {k['kcv']}")


@cardkeys_group.command("export-psam")
@click.option("--region", required=True, help="6-digit region code of the city.")
@click.option("--recipient", type=_FILE, required=True,
              help="SM2 public key (PEM/DER) of the PSAM personalisation station.")
@click.option("--out", type=_FILE, required=True,
              help="Where to write the encrypted export for the PSAM station.")
@_share_options
@click.pass_context
@_kmc_errors
def cardkeys_export_psam(ctx: click.Context, region: str, recipient: Path, out: Path,
                         shares: tuple[Path, ...],
                         share_passphrase_files: tuple[Path, ...]) -> None:
    """Export the keys a city's PSAMs hold, sealed for the personalisation station."""
    from keymgmt.cardkeys import CardKeyService
    from sscard.x509.pem import pem_to_der

    kmc = _open(ctx, _unseal(ctx, shares, share_passphrase_files))
    try:
        sealed = CardKeyService(kmc).export_psam(region, pem_to_der(recipient.read_bytes()))
    finally:
        kmc.close()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(sealed)
    click.echo(f"PSAM contents for {region} sealed to {out}")


# -- service and events ---------------------------------------------------------------------

class _KmcAppFactory:
    """Builds the KMC app in one gunicorn worker: its own audit log (with scheduled
    checkpoints), database engine and storage key (an HSM session is never shared across the
    fork), unsealed from the custodians' shares read once by the master."""

    def __init__(self, home: Path, db_url: str, audit_url: str, given: list[Any]) -> None:
        self.home, self.db_url, self.audit_url, self.given = home, db_url, audit_url, given

    def __call__(self) -> Any:
        from keymgmt import ceremony
        from keymgmt.service import KeyManagementCentre
        from keymgmt.web import create_app
        from sscard.audit.scheduled import open_served_log

        audit = open_served_log(self.audit_url, self.home)
        storage_key = ceremony.unseal(self.home, self.given, actor=SERVICE_ACTOR, audit=audit)
        return create_app(KeyManagementCentre.open(self.db_url, storage_key, audit=audit))


#: who the audit records name for the served KMC's own unsealing (one per worker)
SERVICE_ACTOR = "kmc-service"


@group.command("serve")
@serve_options(default_port=8470)
@db_url_options(AUDIT_DB_URL_ENV, "audit log database (default: <home>/audit.sqlite)",
                option="--audit-db-url", dest="audit_url", aliases=("--audit-url",))
@_share_options
@click.pass_context
@_kmc_errors
def serve(ctx: click.Context, serving: ServeOptions, audit_url: str | None,
          shares: tuple[Path, ...], share_passphrase_files: tuple[Path, ...]) -> None:
    """Run the KMC service under gunicorn, unsealed at start by the custodians present."""
    from keymgmt.service import KeyManagementCentre
    from sscard.audit.scheduled import home_audit_key

    given = _read_shares(shares, share_passphrase_files)
    url = _db_url(ctx)
    # the workers' audit signing key made (or found unloadable) here, before anything is done
    home_audit_key(_home(ctx))
    # unseal once here, so that wrong shares are reported before serving and the database
    # schema is in place before the workers open it
    kmc = KeyManagementCentre.open(url, _unseal_given(ctx, given), audit=_audit(ctx))
    key_id = kmc.storage_key.key_id
    kmc.close()
    click.echo(f"KMC serving on {serving.url} (storage key {key_id}, gunicorn, "
               f"{serving.workers} workers)", err=True)
    run(_KmcAppFactory(_home(ctx), url, resolve_audit_url(ctx, audit_url), given), serving,
        name="kmc")


@group.command("events")
@_api_key_option
@click.option("--action", default="", help="Only actions starting with this.")
@click.pass_context
@_kmc_errors
def events_cmd(ctx: click.Context, api_key_file: Path, action: str) -> None:
    """List the KMC's events (time, actor, action, subject, details)."""
    kmc = _open(ctx)
    try:
        for e in kmc.events(_principal(kmc, api_key_file), action):
            click.echo(f"{e['at']} {e['actor']} {e['action']} {e['subject']} "
                       f"{json.dumps(e['details'], ensure_ascii=False)}")
    finally:
        kmc.close()

