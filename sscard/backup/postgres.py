"""PostgreSQL databases of a data directory: found in its TOML configuration, dumped with
``pg_dump --format=custom`` (one repeatable-read snapshot per database) and restored with
``pg_restore``. Passwords go to the tools through ``PGPASSWORD``, never on the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sscard.backup.errors import BackupError, RestoreTargetError

PG_BIN_ENV = "SSCARD_PG_BIN"
DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")
_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class PgDatabase:
    """A database named in the configuration: ``label`` is ``<file>:<dotted key>``."""

    label: str
    url: str

    @property
    def redacted(self) -> str:
        return redact(self.url)


def redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def is_postgres_url(value: str) -> bool:
    return value.split(":", 1)[0].split("+", 1)[0] in _SCHEMES and "://" in value


def _strings(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key in sorted(node):
            yield from _strings(node[key], (*path, str(key)))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _strings(item, (*path, str(i)))


def databases_in_config(home: Path) -> list[PgDatabase]:
    """Every PostgreSQL URL in a ``*.toml`` file under ``home`` (a file that does not parse
    is an error: silently skipping it could leave a database out of the backup)."""
    found: list[PgDatabase] = []
    for path in sorted(home.rglob("*.toml")):
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(home).as_posix()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BackupError(f"configuration {rel} does not parse, so the databases it may "
                              f"name are unknown: {exc}") from None
        for keys, value in _strings(data, ()):
            if is_postgres_url(value):
                found.append(PgDatabase(f"{rel}:{'.'.join(keys)}", value))
    return found


def pg_tool(name: str) -> str:
    base = Path(os.environ.get(PG_BIN_ENV, DEFAULT_PG_BIN))
    if (base / name).exists():
        return str(base / name)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found (looked in {base} and on PATH; set {PG_BIN_ENV})")
    return found


def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for the PostgreSQL tools and the environment carrying the password."""
    try:
        parsed: URL = make_url(url)
    except ArgumentError:
        raise BackupError(f"not a database URL: {redact(url)}") from None
    if not parsed.database:
        raise BackupError(f"{redact(url)} names no database")
    args = ["--dbname", parsed.database]
    if parsed.host:
        args += ["--host", parsed.host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return args, env


def dump(db: PgDatabase, target: Path) -> None:
    args, env = _libpq(db.url)
    proc = subprocess.run(
        [pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
         "--file", str(target), "--no-password", *args],
        env=env, capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        raise BackupError(f"pg_dump of {db.label} ({db.redacted}) failed: "
                          f"{proc.stderr.strip()}")


def check_dump(path: Path, label: str) -> int:
    """``pg_restore --list`` reads the whole table of contents; returns its entry count."""
    proc = subprocess.run([pg_tool("pg_restore"), "--list", str(path)], capture_output=True,
                          text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise BackupError(f"the dump of {label} is unreadable: {proc.stderr.strip()}")
    return sum(1 for line in proc.stdout.splitlines() if line and not line.startswith(";"))


def require_empty(url: str, label: str) -> None:
    """Refuse to restore over a database that already holds tables."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(sqlalchemy.text(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN "
                "('pg_catalog', 'information_schema')")).scalar_one()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise RestoreTargetError(f"cannot reach the target database for {label} "
                                 f"({redact(url)}): {exc.__class__.__name__}: "
                                 f"{str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    if count:
        raise RestoreTargetError(f"the target database for {label} ({redact(url)}) is not "
                                 f"empty ({count} tables): restore needs an empty database")


def restore(dump_path: Path, url: str, label: str) -> None:
    args, env = _libpq(url)
    proc = subprocess.run(
        [pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
         "--single-transaction", "--no-password", *args, str(dump_path)],
        env=env, capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        raise BackupError(f"pg_restore of {label} into {redact(url)} failed: "
                          f"{proc.stderr.strip()}")
