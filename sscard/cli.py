"""The ``sscard`` command. Each package contributes its own group through the
``sscard.commands`` entry point, so the foundation never imports the packages above it."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sscard.exitcodes import Exit

if TYPE_CHECKING:
    from sscard.audit import AuditLog

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Context:
    """What every command gets: the data directory (``--home``)."""

    home: Path


def home_option_default() -> str:
    return os.environ.get("SSCARD_HOME") or "./sscard-data"


def data_home(ctx: click.Context) -> Path:
    """The data directory (``--home``, $SSCARD_HOME, ./sscard-data): the one resolver every
    group uses."""
    obj = ctx.find_root().obj
    home = getattr(obj, "home", None)
    return Path(home) if home is not None else Path(home_option_default())


def db_url_options(env_var: str, what: str, option: str = "--db-url",
                   dest: str = "db_url", aliases: tuple[str, ...] = ()) -> Callable[[F], F]:
    """``--db-url URL`` (no password) and ``--db-url-file FILE`` (mode 0600), falling back to
    ``$env_var``; the command gets ``dest`` already resolved by ``resolve_db_url``. The one
    spelling is ``--db-url`` for a command's own database and ``--<what>-db-url`` for another
    one (``--audit-db-url``); ``aliases`` are older spellings, still accepted, hidden from the
    help and named as deprecated when used (docs/cli.md)."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from sscard.sqlschema import DatabaseUrlError, resolve_db_url

            url_file = kwargs.pop(f"{dest}_file")
            for i, alias in enumerate(aliases):
                old_url = kwargs.pop(f"{dest}_alias{i}")
                old_file = kwargs.pop(f"{dest}_alias{i}_file")
                if old_url is None and old_file is None:
                    continue
                if kwargs[dest] is not None or url_file is not None:
                    raise click.UsageError(f"give {option} or its old spelling {alias}, not both")
                click.echo(f"warning: {alias} is deprecated; use {option}", err=True)
                kwargs[dest], url_file = old_url, old_file
            try:
                kwargs[dest] = resolve_db_url(kwargs[dest], url_file, env_var, option)
            except DatabaseUrlError as exc:
                raise click.UsageError(str(exc)) from None
            return func(*args, **kwargs)

        for i, alias in enumerate(aliases):
            wrapper = click.option(f"{alias}-file", f"{dest}_alias{i}_file", default=None,
                                   hidden=True, type=click.Path(dir_okay=False, path_type=Path),
                                   help=f"Deprecated spelling of {option}-file.")(wrapper)
            wrapper = click.option(alias, f"{dest}_alias{i}", default=None, hidden=True,
                                   metavar="URL", help=f"Deprecated spelling of {option}.")(wrapper)

        wrapper = click.option(
            f"{option}-file", f"{dest}_file", default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            help=f"File (mode 0600) whose first line is the {what} URL, for a URL with a "
                 "password.")(wrapper)
        wrapper = click.option(
            option, dest, default=None, metavar="URL",
            help=f"{what[0].upper()}{what[1:]} URL without a password (else {option}-file or "
                 f"${env_var}).")(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate


AUDIT_DB_URL_ENV = "SSCARD_AUDIT_DB_URL"


def audit_url(ctx: click.Context, url: str | None = None) -> str:
    """The audit log's URL: ``url``, $SSCARD_AUDIT_DB_URL, or ``<home>/audit.sqlite`` (for a
    served process that opens the log again in each worker)."""
    from sscard.audit import default_url

    return url or os.environ.get(AUDIT_DB_URL_ENV) or default_url(data_home(ctx))


def open_audit_log(ctx: click.Context, url: str | None = None, *,
                   served: bool = False) -> AuditLog:
    """The audit log a state-changing command records in: ``url``, $SSCARD_AUDIT_DB_URL, or
    ``<home>/audit.sqlite``. A log that cannot be opened ends the command before it does
    anything (no record, no operation). ``served``: a service's log, which makes signed
    checkpoints on a schedule (``sscard.audit.scheduled``)."""
    from sscard.audit import AuditError, AuditLog
    from sscard.audit.scheduled import open_served_log
    from sscard.crypto.errors import CryptoError

    home = data_home(ctx)
    url = url or os.environ.get(AUDIT_DB_URL_ENV)
    try:
        if served:
            home.mkdir(parents=True, exist_ok=True)
            return open_served_log(audit_url(ctx, url), home)
        return AuditLog.open(url) if url else AuditLog.at_home(home)
    except (AuditError, CryptoError, OSError, ValueError) as exc:
        raise click.ClickException(f"the audit log cannot be opened, so nothing was done: "
                                   f"{exc}") from None


def format_option(func: F) -> F:
    """``--format text|json`` for every list and show command (docs/cli.md): json is one JSON
    document on standard output, codes as codes, for other programs."""
    return click.option("--format", "output_format", type=click.Choice(["text", "json"]),
                        default="text", show_default=True,
                        help="text for people, json for other programs.")(func)


def echo_json(data: Any) -> None:
    """The JSON document of a ``--format json`` command (UTF-8, names not escaped)."""
    import json

    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


class CommandError(click.ClickException):
    """A refusal, or input that is not valid (exit 1): click prints it as every other error,
    ``Error: MESSAGE`` on stderr (issue 14: one error prefix)."""

    exit_code = Exit.REFUSED


class UnusableInput(CommandError):
    """Input the command cannot use at all (exit 2, as for a usage error)."""

    exit_code = Exit.USAGE


#: the optional third-party modules and the extra that installs each (pyproject.toml): a
#: business system that only signs and verifies installs none of them
EXTRAS = {
    "flask": "server", "werkzeug": "server", "gunicorn": "server", "argon2": "server",
    "psycopg": "server", "smartcard": "card", "pkcs11": "hsm",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra whose absence ``exc`` reports, if it is one of ours."""
    return EXTRAS.get((exc.name or "").split(".")[0])


#: the commands the project's own packages declare under ``sscard.commands`` (pyproject.toml):
#: where each lives and its one-line help, so that ``sscard --help`` lists them without importing
#: any of them (importing them all took 0.5 s: SQLAlchemy, cryptography, requests, pyhanko).
#: tests/cli/test_startup.py holds this table to the entry points and to each command's own help.
COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("reader_tools.agent:agent_command",
              "Browser agent for card login: listens on 127.0.0.1 for allow-listed pages."),
    "admin": ("sscard.backup.cli:group",
              "Administration: backup, restore and verification of backups."),
    "audit": ("sscard.audit.cli:group",
              "The tamper-evident audit log: verify, show, checkpoint, prove."),
    "ca": ("ca.cli:group",
           "Certificate authority: hierarchy, issuance, revocation, CRL, OCSP, TSA."),
    "card": ("reader_tools.cli:group",
             "Social security card: read, PIN, keys, certificates, emulation, personalisation."),
    "csr": ("sscard.x509.cli:csr_group", "PKCS#10 certificate requests."),
    "decrypt": ("sscard.gateway.cli:decrypt_command",
                "Open the envelope IN into OUT (with --gateway: with the calling system's key)."),
    "encrypt": ("sscard.gateway.cli:encrypt_command",
                "Encrypt IN to the recipients' certificates into OUT (CMS EnvelopedData, DER)."),
    "gateway": ("sscard.gateway.cli:gateway_group",
                "The certificate application support platform (HTTP gateway for business "
                "systems)."),
    "idp": ("sscard.idp.cli:group",
            "OpenID Connect provider: card login for business systems' web applications."),
    "key": ("sscard.keys.cli:key_group",
            "Software keys (encrypted PKCS#8) and keys on PKCS#11 tokens."),
    "kmc": ("keymgmt.cli:group",
            "Key management centre: ceremony, escrow, recovery, card master keys."),
    "ra": ("ra.cli:group", "Registration authority: cardholders, requests, officers, approvals."),
    "sign": ("sscard.gateway.cli:sign_command", "Sign IN into OUT (CMS SignedData, DER)."),
    "verify": ("sscard.gateway.cli:verify_command",
               "Verify SIGNED: exit 0 valid, 1 not valid (with the reasons), 2 unusable input."),
    "x509": ("sscard.x509.cli:x509_group", "Show and verify certificates, CSRs and CRLs."),
}


def load_target(target: str) -> Any:
    """The object an entry-point style ``module:attribute`` string names."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


class LazyGroup(click.Group):
    """A group whose subcommands (``lazy``: name -> ``module:attribute`` and one-line help) are
    imported only when one is run or asked for its help; the group's own ``--help`` lists them
    from the table."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in self.lazy:
            loaded = load_target(self.lazy[cmd_name][0])
            if not isinstance(loaded, click.Command):
                raise TypeError(f"{self.lazy[cmd_name][0]} is not a click command")
            cmd = loaded
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows: list[tuple[str, str]] = []
        for name in names:
            cmd = super().get_command(ctx, name)
            if cmd is not None:
                if not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit)))
            else:
                # a stand-in with the table's text, shortened as click shortens a loaded one's
                stand_in = click.Command(name, help=self.lazy[name][1])
                rows.append((name, stand_in.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _home_after_group(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """``sscard GROUP --home DIR ...``: the same data directory as ``sscard --home DIR GROUP``."""
    if value is not None:
        root = ctx.find_root()
        if isinstance(root.obj, Context):
            root.obj.home = value
        else:  # the group run on its own (a test's CliRunner), without the sscard root
            root.obj = ctx.obj = Context(home=value)


def accept_home(cmd: click.Command) -> click.Command:
    """Lets ``--home`` follow the group's name as well as precede it (issue 14)."""
    if isinstance(cmd, click.Group) and not any(p.name == "home" for p in cmd.params):
        cmd.params.append(click.Option(
            ["--home"], type=click.Path(file_okay=False, path_type=Path), default=None,
            expose_value=False, callback=_home_after_group,
            help="Data directory (the same as sscard --home DIR before the group)."))
    return cmd


class PluginGroup(LazyGroup):
    """The root: the project's commands from ``COMMANDS``, any other package's from the
    ``sscard.commands`` entry points (looked up only by name: scanning them on every start
    costs more than the whole start-up budget); a command that needs an extra that is not
    installed says which one."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            extra = missing_extra(exc)
            if extra is None:
                raise
            raise click.ClickException(
                f"this command needs {exc.name}, which the [{extra}] extra installs: "
                f"pip install 'sscard-pki[{extra}]'") from None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None:
            from importlib.metadata import entry_points

            for ep in entry_points(group="sscard.commands", name=cmd_name):
                loaded = ep.load()
                cmd = loaded if isinstance(loaded, click.Command) else None
                break
        return accept_home(cmd) if cmd is not None else None


@click.group(cls=PluginGroup, lazy=COMMANDS)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=home_option_default,
    show_default="$SSCARD_HOME or ./sscard-data",
    help="Data directory for commands that keep state.",
)
@click.pass_context
def cli(ctx: click.Context, home: Path) -> None:
    """sscard-pki: CA, RA, KMC, card and gateway tooling for the social security card."""
    ctx.obj = Context(home=home)


def main() -> None:
    try:
        cli(prog_name="sscard")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(Exit.INTERRUPTED)


if __name__ == "__main__":
    main()
