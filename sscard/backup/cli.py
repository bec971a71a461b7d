"""``sscard admin ...``: backup, restore and verify-backup of a data directory.

``verify-backup`` exits 0 when the backup is intact, 1 when it was altered or damaged, 2 when it
cannot be checked (wrong passphrase, not a backup, unreadable file).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from sscard.backup.errors import (
    BackupError,
    BackupFormatError,
    BackupIntegrityError,
    RestoreTargetError,
    WrongBackupPassphrase,
)
from sscard.cli import CommandError, UnusableInput, data_home
from sscard.exitcodes import Exit
from sscard.secrets_input import read_secret

if TYPE_CHECKING:
    from sscard.backup.restore import BackupReport

EXIT_OK, EXIT_DAMAGED, EXIT_UNUSABLE = Exit.OK, Exit.REFUSED, Exit.USAGE


def _fail(code: int, message: str) -> NoReturn:
    raise (UnusableInput if code == EXIT_UNUSABLE else CommandError)(message)


def _home(ctx: click.Context) -> Path:
    return data_home(ctx)


def _passphrase(file: Path | None, stdin: bool, confirm: bool = False) -> bytes:
    return read_secret(file=file, from_stdin=stdin, prompt="Backup passphrase", confirm=confirm)


passphrase_file = click.option(
    "--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
    help="File whose first line is the backup passphrase.")
passphrase_stdin = click.option("--passphrase-stdin", is_flag=True,
                                help="Read the backup passphrase from stdin.")


def _summary(report: BackupReport) -> str:
    return (f"{report.count('sqlite')} SQLite database(s), {report.count('postgresql')} "
            f"PostgreSQL database(s), {report.count('file')} file(s)")


@click.group("admin")
def group() -> None:
    """Administration: backup, restore and verification of backups."""


@group.command("backup")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Backup file to write (must not exist).")
@passphrase_file
@passphrase_stdin
@click.option("--db-url", "database_urls", multiple=True, metavar="URL",
              help="Also dump this PostgreSQL database (those named in the data directory's "
                   "*.toml files are found by themselves). Repeatable. No password here: a URL "
                   "with one goes in --db-url-file.")
@click.option("--db-url-file", "database_url_files", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A file (mode 0600) whose first line is such a URL. Repeatable.")
@click.option("--database-url", "old_database_urls", multiple=True, metavar="URL", hidden=True,
              help="Deprecated spelling of --db-url.")
@click.option("--database-url-file", "old_database_url_files", multiple=True, hidden=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Deprecated spelling of --db-url-file.")
@click.pass_context
def backup_cmd(ctx: click.Context, out: Path, passphrase_file: Path | None,
               passphrase_stdin: bool, database_urls: tuple[str, ...],
               database_url_files: tuple[Path, ...], old_database_urls: tuple[str, ...],
               old_database_url_files: tuple[Path, ...]) -> None:
    """Write a consistent, encrypted snapshot of the data directory (--home)."""
    from sscard.backup.snapshot import create_backup
    from sscard.sqlschema import DatabaseUrlError, argv_db_url, file_db_url

    if old_database_urls or old_database_url_files:
        click.echo("warning: --database-url is deprecated; use --db-url", err=True)
    try:
        database_urls = (
            *(argv_db_url(u, "--db-url") for u in (*database_urls, *old_database_urls)),
            *(file_db_url(f, "--db-url-file")
              for f in (*database_url_files, *old_database_url_files)))
    except DatabaseUrlError as exc:
        raise click.UsageError(str(exc)) from None
    home = _home(ctx)
    passphrase = _passphrase(passphrase_file, passphrase_stdin, confirm=True)
    try:
        summary = create_backup(home, out, passphrase, extra_database_urls=database_urls)
    except BackupError as exc:
        _fail(EXIT_DAMAGED, str(exc))
    click.echo(f"backup of {home} written to {out}: {summary.count('sqlite')} SQLite "
               f"database(s), {summary.count('postgresql')} PostgreSQL database(s), "
               f"{summary.count('file')} file(s)")
    for why in summary.skipped:
        click.echo(f"skipped {why}", err=True)


@group.command("verify-backup")
@click.argument("backup", type=click.Path(dir_okay=False, path_type=Path))
@passphrase_file
@passphrase_stdin
def verify_cmd(backup: Path, passphrase_file: Path | None, passphrase_stdin: bool) -> None:
    """Check a backup completely (authentication, every member's SHA-256, database
    integrity); exit 0 intact, 1 altered or damaged, 2 cannot be checked."""
    from sscard.backup.restore import verify_backup

    passphrase = _passphrase(passphrase_file, passphrase_stdin)
    try:
        report = verify_backup(backup, passphrase)
    except (WrongBackupPassphrase, BackupFormatError) as exc:
        _fail(EXIT_UNUSABLE, str(exc))
    except BackupIntegrityError as exc:
        _fail(EXIT_DAMAGED, f"backup {backup} is damaged or altered: {exc}")
    except BackupError as exc:
        _fail(EXIT_UNUSABLE, str(exc))
    click.echo(f"backup {backup} is intact (made {report.created_at}): {_summary(report)}")
    for label in report.pg_labels:
        click.echo(f"  PostgreSQL {label}: {report.pg_entries.get(label, 0)} dump entries")


@group.command("restore")
@click.argument("backup", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--home", "target", type=click.Path(file_okay=False, path_type=Path),
              help="Fresh (absent or empty) data directory to restore into; default: the root "
                   "option --home.")
@click.option("--database", "databases", multiple=True, metavar="LABEL=URL",
              help="Restore the PostgreSQL database LABEL (as verify-backup lists it) into this "
                   "empty database; the restored configuration is changed to name it. No "
                   "password here: use --database-file LABEL=FILE for a URL with one.")
@click.option("--database-file", "database_files", multiple=True, metavar="LABEL=FILE",
              help="As --database, the URL read from FILE (mode 0600).")
@passphrase_file
@passphrase_stdin
@click.pass_context
def restore_cmd(ctx: click.Context, backup: Path, target: Path | None,
                databases: tuple[str, ...], database_files: tuple[str, ...],
                passphrase_file: Path | None, passphrase_stdin: bool) -> None:
    """Restore a backup into a fresh data directory (refuses a non-empty one)."""
    from sscard.backup.restore import restore_backup
    from sscard.sqlschema import DatabaseUrlError, argv_db_url, file_db_url

    target = target or _home(ctx)
    mapping: dict[str, str] = {}
    for option, items in (("--database", databases), ("--database-file", database_files)):
        for item in items:
            # the URL itself may hold '='; labels never do, so split at the first '=' instead
            label, sep, value = item.partition("=")
            if not sep or not label or not value:
                _fail(EXIT_UNUSABLE, f"{option} wants LABEL=..., not {item.split('=')[0]!r}=...")
            try:
                mapping[label] = argv_db_url(value, option) if option == "--database" \
                    else file_db_url(value, option)
            except DatabaseUrlError as exc:
                raise click.UsageError(str(exc)) from None
    passphrase = _passphrase(passphrase_file, passphrase_stdin)
    try:
        report = restore_backup(backup, passphrase, target, mapping)
    except (WrongBackupPassphrase, BackupFormatError, RestoreTargetError) as exc:
        _fail(EXIT_UNUSABLE, str(exc))
    except BackupIntegrityError as exc:
        _fail(EXIT_DAMAGED, f"backup {backup} is damaged or altered; nothing restored: {exc}")
    except BackupError as exc:
        _fail(EXIT_UNUSABLE, f"{exc}; nothing restored")
    click.echo(f"restored {backup} into {target}: {_summary(report)}")
