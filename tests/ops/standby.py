"""Two local PostgreSQL 15 instances standing for the two sites: a primary and a streaming
standby made by scripts/pg-standby.sh (pg_basebackup -R), all in one temporary directory.

Unlike tests/pg.py's cluster, the primary keeps synchronous_commit at its default (on): with
synchronous_standby_names set, a commit returns only once the standby has the WAL, which is
the configuration the operations guide prescribes for zero loss at failover.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.pg import PG_BIN, SUPERUSER, free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pg-standby.sh"


class Site:
    """One PostgreSQL instance (the primary, or the standby after create_standby)."""

    def __init__(self, base: Path, name: str) -> None:
        self.data = base / name
        self.sockets = base / "sock"
        self.port = 0

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def sql(self, query: str, database: str = "postgres") -> list[tuple[object, ...]]:
        conninfo = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            cur = conn.execute(query.encode())
            return list(cur.fetchall()) if cur.description else []


class TwoSites:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="sscard-dr-"))
        self._root = os.geteuid() == 0
        self.primary = Site(self.base, "primary")
        self.standby = Site(self.base, "standby")
        (self.base / "sock").mkdir()
        if self._root:
            pw = pwd.getpwnam("postgres")
            for p in (self.base, self.base / "sock"):
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        cmd = list(args)
        if self._root and not args[0].endswith(".sh"):
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False,
                              env={**os.environ, **(env or {})})
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def start_primary(self) -> None:
        self.run(str(PG_BIN / "initdb"), "-D", str(self.primary.data), "-U", SUPERUSER,
                 "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        self.primary.port = free_port()
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.primary.data), "-l",
                 str(self.base / "primary.log"), "-w", "-t", "60", "-o",
                 f"-p {self.primary.port} -c listen_addresses=127.0.0.1 "
                 f"-c unix_socket_directories={self.base / 'sock'} -c fsync=off "
                 "-c wal_level=replica -c max_wal_senders=5 -c shared_buffers=32MB", "start")

    def create_standby(self) -> None:
        self.standby.port = free_port()
        self.run(str(SCRIPT), "create", "127.0.0.1", str(self.primary.port),
                 str(self.standby.data), str(self.standby.port),
                 env={"PG_STANDBY_SOCKETS": str(self.base / "sock"),
                      "PG_STANDBY_OPTIONS": "-c fsync=off -c shared_buffers=32MB"})

    def make_synchronous(self) -> None:
        """From now on a commit on the primary waits for the standby to have its WAL."""
        self.primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        self.primary.sql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.primary.sql("SELECT sync_state FROM pg_stat_replication") == [("sync",)]:
                return
            time.sleep(0.1)
        raise RuntimeError("the standby did not become synchronous")

    def lose_primary(self) -> None:
        """The primary site goes dark: immediate shutdown, no checkpoint, no goodbye."""
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.primary.data), "-m", "immediate",
                 "-w", "stop")

    def promote(self) -> None:
        self.run(str(SCRIPT), "promote", str(self.standby.data))

    def stop(self) -> None:
        for site in (self.primary, self.standby):
            if (site.data / "postmaster.pid").exists():
                subprocess.run(
                    (["runuser", "-u", "postgres", "--"] if self._root else [])
                    + [str(PG_BIN / "pg_ctl"), "-D", str(site.data), "-m", "immediate", "-w",
                       "stop"], capture_output=True, check=False, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)
