"""A private PostgreSQL server for tests, usable by every area.

Each test session starts one throw-away cluster (``initdb`` + ``pg_ctl`` from the Debian
``postgresql-15`` binaries) in a temporary directory on a free port, gives each test module its
own database, and stops the cluster when the session ends. Nothing is shared with a system
server, so parallel runs on one machine do not clash.

Use it from a ``conftest.py`` or a test module::

    from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)

    def test_something(pg_url: str) -> None:
        engine = sqlalchemy.create_engine(pg_url)

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to the
``postgres`` OS user and every server command runs through ``runuser -u postgres --``. When
PostgreSQL is missing the fixtures skip with the reason, except under ``CI=true``, where a
missing component is a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("SSCARD_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing_reason() -> str | None:
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"PostgreSQL not installed: {PG_BIN / tool} is missing (scripts/system-deps.sh)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' OS user to own the cluster"
        if shutil.which("runuser") is None:
            return "running as root but runuser(1) is missing"
    return None


def require_postgres() -> None:
    """Skip (or, with CI=true, fail) the calling test when PostgreSQL cannot be started."""
    reason = _missing_reason()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """One private cluster: ``start()``, ``create_database()``, ``url()``, ``stop()``."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: that is mode 0700 for root, and the postgres user must
        # be able to reach its data directory.
        self.base = Path(tempfile.mkdtemp(prefix="sscard-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sock"
        self.log = self.base / "server.log"
        self.port = 0
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        self.sockets.mkdir()
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            for p in (self.base, self.sockets):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        try:
            self._run(
                str(PG_BIN / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.strip()}") from None
        last_error = ""
        for _attempt in range(5):  # another process may grab the free port between probe and bind
            self.port = free_port()
            # Durability settings off: a test cluster is thrown away, and fsync costs seconds.
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 "
                f"-c unix_socket_directories={self.sockets} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                "-c shared_buffers=32MB"
            )
            proc = self._run(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                "-o", options, "-w", "-t", "60", "start", check=False,
            )
            if proc.returncode == 0:
                return
            last_error = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            last_error = last_error or proc.stderr
        raise RuntimeError(f"PostgreSQL did not start: {last_error.strip()}")

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                      "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _psql_admin(self, sql: str) -> None:
        import psycopg

        conninfo = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, hint: str = "test") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        cleaned = "".join(c if c.isalnum() else "_" for c in hint.lower())[:40]
        name = f"{cleaned}_{uuid.uuid4().hex[:8]}"
        self._psql_admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(Exception):
            self._psql_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the whole session, stopped at its end."""
    require_postgres()
    cluster = PostgresCluster()
    try:
        cluster.start()
    except Exception as exc:
        cluster.stop()
        if _in_ci():
            pytest.fail(f"CI=true and PostgreSQL could not be started: {exc}")
        pytest.skip(f"PostgreSQL could not be started: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def pg_url(pg_cluster: PostgresCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """An SQLAlchemy URL (postgresql+psycopg://...) for a database private to this module."""
    url = pg_cluster.create_database(request.module.__name__.rsplit(".", 1)[-1])
    try:
        yield url
    finally:
        pg_cluster.drop_database(url)
