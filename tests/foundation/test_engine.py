"""The one engine factory and the UTC datetime column type (sscard.sqlschema), as every database
of the project gets them: the CA's, the KMC's, the RA's, the audit log's and the gateway's."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

import ca.storage
import keymgmt.db
import ra.store
import sscard.audit.log
from sscard.gateway.challenges import SqlChallengeStore
from sscard.sqlschema import WRITE, UTCDateTime, make_engine

FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL

ENGINES: dict[str, Callable[[str], sa.Engine]] = {
    "ca": ca.storage.make_engine,
    "kmc": keymgmt.db.make_engine,
    "ra": ra.store.make_engine,
    "audit": sscard.audit.log.make_engine,
    "gateway": lambda url: SqlChallengeStore(url).engine,
}


@pytest.mark.parametrize("service", sorted(ENGINES))
def test_every_sqlite_database_is_wal_and_synchronous_full(service: str, tmp_path: Path) -> None:
    # the CA ran synchronous=NORMAL: a power cut could roll back a certificate already handed out
    engine = ENGINES[service](f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == FULL
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def _second_writer_blocked(path: Path, begin: Callable[[sa.Connection], None],
                           engine: sa.Engine) -> bool:
    """Whether a transaction opened by ``begin`` holds the write lock before it writes."""
    with engine.connect() as conn:
        begin(conn)
        conn.exec_driver_sql("SELECT 1").scalar()  # a read only
        other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return True
        finally:
            other.close()
        conn.rollback()
    return False


def test_writes_begin_immediate_reads_deferred(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        assert _second_writer_blocked(
            path, lambda c: (c.execution_options(**WRITE), c.begin()), engine)
        assert not _second_writer_blocked(path, lambda c: c.begin(), engine)
    finally:
        engine.dispose()
    immediate = make_engine(f"sqlite:///{path}", immediate=True)
    try:
        assert _second_writer_blocked(path, lambda c: c.begin(), immediate)
    finally:
        immediate.dispose()


def test_concurrent_writers_queue_instead_of_failing(tmp_path: Path) -> None:
    """Read-then-write from many threads: BEGIN IMMEDIATE queues them; none sees 'locked'."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (0)")
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(10):
                with engine.connect().execution_options(**WRITE) as conn, conn.begin():
                    n = conn.exec_driver_sql("SELECT n FROM counter").scalar_one()
                    conn.exec_driver_sql(f"UPDATE counter SET n = {n + 1}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT n FROM counter").scalar_one() == 60
    finally:
        engine.dispose()


def _utc_table() -> tuple[sa.MetaData, sa.Table]:
    md = sa.MetaData()
    return md, sa.Table("times", md, sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("at", UTCDateTime(), nullable=True))


def test_utc_datetime_round_trips_aware_and_refuses_naive(tmp_path: Path) -> None:
    md, table = _utc_table()
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        md.create_all(engine)
        beijing = dt.timezone(dt.timedelta(hours=8))
        when = dt.datetime(2026, 12, 6, 20, 0, 0, 123456, tzinfo=beijing)
        with engine.begin() as conn:
            conn.execute(table.insert().values(id=1, at=when))
            conn.execute(table.insert().values(id=2, at=None))
        with engine.connect() as conn:
            back = conn.execute(sa.select(table.c.at).where(table.c.id == 1)).scalar_one()
            stored = conn.exec_driver_sql("SELECT at FROM times WHERE id = 1").scalar_one()
            assert conn.execute(sa.select(table.c.at).where(table.c.id == 2)).scalar_one() \
                is None
            # an aggregate keeps the column's type, so it comes back aware too
            latest = conn.execute(sa.select(sa.func.max(table.c.at))).scalar_one()
        assert back == when and back.tzinfo is dt.UTC and back.hour == 12
        assert latest == when and latest.tzinfo is dt.UTC
        assert stored.startswith("2026-12-06 12:00:00")  # stored as UTC text
        with pytest.raises(sa.exc.StatementError, match="naive datetime"), engine.begin() as conn:
            conn.execute(table.insert().values(id=3, at=dt.datetime(2026, 1, 1)))
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 2
    finally:
        engine.dispose()


def test_models_use_the_utc_type() -> None:
    """No model column is a bare DateTime that would hand back naive times on SQLite."""
    from ca.storage import Base as CABase
    from keymgmt.db import Base as KmcBase
    from ra.models import Base as RABase

    bare = [f"{t.name}.{c.name}"
            for base in (CABase, KmcBase, RABase) for t in base.metadata.sorted_tables
            for c in t.columns
            if isinstance(c.type, sa.DateTime) and not isinstance(c.type, UTCDateTime)]
    assert bare == []
