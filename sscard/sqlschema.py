"""What every database of the project shares: the engine factory, the UTC datetime column type,
table creation under concurrency and Alembic upgrades.

``make_engine`` is the one place that opens a database (CA, KMC, RA, audit log, gateway). On
SQLite it sets write-ahead logging (readers never block the writer), ``synchronous=FULL`` (a
committed row, such as a certificate already handed out, survives a power cut), a long busy
timeout and foreign keys; transactions begin ``DEFERRED`` unless the connection asks to write
(``WRITE``, or ``immediate=True`` for an engine whose every transaction writes), which begins
``IMMEDIATE``: the write lock is taken before the first read, so two processes never both read
and then fail on upgrading to a write lock ("database is locked", which SQLite does not retry).

gunicorn boots its workers together, and each one opens the same database: SQLAlchemy's
``create_all`` checks for a table, then creates it, so the loser of that race gets "table
already exists" (SQLite's OperationalError, PostgreSQL's ProgrammingError or IntegrityError);
``create_all_concurrently`` accepts that lost race.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import event

SQLITE_BUSY_TIMEOUT_S = 60
#: execution option of a connection whose transactions write: ``engine.connect()
#: .execution_options(**WRITE)``; on SQLite they begin IMMEDIATE
WRITE = {"sscard_write": True}
# set on every engine this module makes, so that code handed an engine knows BEGIN is ours
_FACTORY_OPTION = "sscard_engine"


def make_engine(url: str, *, immediate: bool = False, **kwargs: Any) -> sa.Engine:
    """The engine for any of the project's databases (see the module docstring).

    ``immediate``: every transaction takes SQLite's write lock at BEGIN (for stores whose
    transactions nearly all write). ``kwargs`` go to ``sqlalchemy.create_engine``.
    """
    if not url.startswith("sqlite"):
        kwargs.setdefault("pool_pre_ping", True)
        return sa.create_engine(url, **kwargs).execution_options(**{_FACTORY_OPTION: True})
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False,
                    **kwargs.pop("connect_args", {})}
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # BEGIN is issued by _on_begin
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = immediate or conn.get_execution_options().get("sscard_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")

    return engine.execution_options(**{_FACTORY_OPTION: True})


def is_factory_engine(engine: sa.Engine | sa.Connection) -> bool:
    """Whether ``engine`` came from ``make_engine`` (so ``WRITE`` takes the write lock)."""
    return bool(engine.get_execution_options().get(_FACTORY_OPTION))


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{path}"


class DatabaseUrlError(ValueError):
    """A database URL given in a way that would leak its password, or that cannot be read."""


def argv_db_url(url: str, option: str, env_var: str | None = None) -> str:
    """A database URL given on the command line: refused when it carries a password (argv is
    visible to every local user through ``ps`` and /proc)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise DatabaseUrlError(f"{option}: not a database URL") from None
    if parsed.password:
        elsewhere = f"{option}-file, mode 0600" + (f", or ${env_var}" if env_var else "")
        raise DatabaseUrlError(
            f"{option} carries a password, which every local user can read on the command "
            f"line; put the URL in a file only you can read ({elsewhere})")
    return url


def file_db_url(path: str | Path, option: str) -> str:
    """The first line of a file only its owner can read (a URL that may carry a password)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatabaseUrlError(f"{option} {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise DatabaseUrlError(
            f"{option} {path} may be read by others (mode {mode & 0o777:04o}); chmod 600 it")
    lines = text.strip().splitlines()
    if not lines or not lines[0].strip():
        raise DatabaseUrlError(f"{option} {path} is empty")
    return lines[0].strip()


def resolve_db_url(url: str | None, url_file: str | Path | None, env_var: str,
                   option: str = "--db-url") -> str | None:
    """The one resolver of database URLs for every command line: ``url`` from argv (refused
    when it carries a password), else ``url_file`` (first line; refused unless only its owner
    can read it), else the environment variable ``env_var``; None when none is given (the
    embedded default)."""
    if url and url_file:
        raise DatabaseUrlError(f"give {option} or {option}-file, not both")
    if url:
        return argv_db_url(url, option, env_var)
    if url_file:
        return file_db_url(url_file, f"{option}-file")
    return os.environ.get(env_var) or None


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime column, on every engine.

    SQLite keeps no zone, so values come back naive; this type stores UTC and hands back aware
    UTC datetimes everywhere, so no module re-attaches the zone itself. A naive value is refused
    on the way in: its zone would be a guess.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None,
                           dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"a UTC datetime column takes a datetime, not {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} for a UTC column: "
                             "give a timezone-aware time")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None,
                             dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class _Compiled(NamedTuple):
    sql: str
    names: tuple[str, ...]
    processors: dict[str, Callable[[Any], Any]]
    fixed: dict[str, Any]
    positional: bool


class DriverStatement:
    """A Core statement of a hot write path, compiled once per dialect and run on the
    connection's DBAPI cursor: parameters given as a dict (or a list of dicts, an executemany)
    are passed as the driver's plain tuples (SQLite's ``?``) or dicts (psycopg), each value
    through its column type's own bind processor, so the database stores exactly what
    ``Connection.execute`` would (SQLite's datetime text, an Enum's value). What it saves is
    SQLAlchemy's per-execution work (cache-key lookup, execution context, result set-up,
    per-row parameter processing), which cost more than the database's own work on these
    paths. The driver's errors are raised as SQLAlchemy's (``IntegrityError`` and so on), as
    ``Connection.execute`` raises them; rows read through ``first`` are the driver's values (no
    result processing: read only plain integers, text and bytes through it). No SQLAlchemy
    event sees these statements (``before_cursor_execute``); the transaction is the
    connection's own (begun, if it was not, as SQLAlchemy's autobegin would).

    Written here because SQLAlchemy offers no lighter execution of a compiled statement."""

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def _for(self, dialect: sa.Dialect) -> _Compiled:
        key = (dialect.name, dialect.paramstyle)
        found = self._compiled.get(key)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            names = tuple(compiled.positiontup or ()) if dialect.positional \
                else tuple(compiled.binds)
            processors = {}
            for name in names:
                processor = compiled.binds[name].type._cached_bind_processor(dialect)
                if processor is not None:
                    processors[name] = processor
            # the statement's own values (``WHERE id = 1``), not the caller's
            fixed = {name: bind.value for name, bind in compiled.binds.items()
                     if not bind.required}
            found = _Compiled(str(compiled), names, processors, fixed, bool(dialect.positional))
            self._compiled[key] = found
        return found

    def __call__(self, conn: sa.Connection,
                 parameters: dict[str, Any] | list[dict[str, Any]] | None = None) -> None:
        """Run the statement (an executemany for a list of parameter dicts)."""
        self._run(conn, parameters).close()

    def first(self, conn: sa.Connection,
              parameters: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The first row the statement returns, by column name, or None."""
        cursor = self._run(conn, parameters)
        try:
            row = cursor.fetchone()
            return None if row is None else dict(zip([d[0] for d in cursor.description], row,
                                                     strict=True))
        finally:
            cursor.close()

    def _run(self, conn: sa.Connection,
             parameters: dict[str, Any] | list[dict[str, Any]] | None) -> Any:
        sql, names, processors, fixed, positional = self._for(conn.dialect)
        many = isinstance(parameters, list)
        rows = parameters if isinstance(parameters, list) else [parameters or {}]
        driver: list[Any] = []
        # the rows of one call mostly share their times (a batch issued at one moment): each
        # time is formatted once
        times: dict[tuple[str, dt.datetime], Any] = {}
        try:
            for row in rows:
                values = {name: fixed[name] if name in fixed else row[name] for name in names}
                for name, processor in processors.items():
                    value = values[name]
                    if type(value) is dt.datetime:
                        key = (name, value)
                        if key not in times:
                            times[key] = processor(value)
                        values[name] = times[key]
                    else:
                        values[name] = processor(value)
                driver.append(tuple(values[n] for n in names) if positional else values)
        except KeyError as exc:
            raise sa.exc.ArgumentError(f"no value given for {exc.args[0]!r} of: {sql}") from None
        if not conn.in_transaction():
            conn.begin()
        cursor = conn.connection.cursor()
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            if many:
                cursor.executemany(sql, driver)
            else:
                cursor.execute(sql, driver[0])
        except dbapi_error as exc:
            cursor.close()
            raise sa.exc.DBAPIError.instance(sql, driver if many else driver[0], exc,
                                             dbapi_error) from exc
        return cursor


def create_all_concurrently(metadata: sa.MetaData, engine: sa.Engine) -> None:
    """``metadata.create_all(engine)``, accepting a lost race when the tables now exist."""
    try:
        metadata.create_all(engine)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
        present = sa.inspect(engine)
        if not all(present.has_table(table.name) for table in metadata.sorted_tables):
            raise


def alembic_upgrade(
    engine: sa.Engine,
    migrations_dir: Path,
    *,
    version_table: str = "alembic_version",
) -> None:
    """Apply a package's Alembic migrations up to head; a no-op when the schema is current.

    The connection that migrates takes SQLite's write lock up front (``WRITE``), so workers
    booting together migrate one after the other. The package's ``env.py`` reads the connection from
    ``config.attributes["connection"]`` and must name the same ``version_table``.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(
            conn, opts={"version_table": version_table}).get_current_revision()
        if current == head:
            return
    with engine.connect().execution_options(**WRITE) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
