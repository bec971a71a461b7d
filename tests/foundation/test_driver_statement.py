"""``sscard.sqlschema.DriverStatement`` (the hot write paths' statements run through the driver
with plain tuples) on SQLite and PostgreSQL: it stores exactly what ``Connection.execute``
stores (datetimes in SQLite's text form, an Enum's value, bytes), so every reader sees the same
rows; bad input (a naive time, a status outside the enum, a missing value) is refused with a
clear error and writes nothing; a duplicate key is still SQLAlchemy's ``IntegrityError``, which
the CA's serial-clash retry relies on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ca.records import Status
from ca.storage import Base, CARecord, CertificateRecord
from sscard.audit import AuditLog
from sscard.audit.verify import verify_log
from sscard.httpsig import SqlReplayStore, request_nonces
from sscard.sqlschema import DriverStatement, make_engine
from tests.pg import PostgresCluster, pg_cluster  # noqa: F401  (fixture)

COLUMNS = ("issuer_id", "serial", "profile", "subject", "not_before", "not_after", "issued_at",
           "der", "status")
INSERT = DriverStatement(sa.insert(CertificateRecord).values(
    {c: sa.bindparam(c) for c in COLUMNS}))
WHEN = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.timezone(dt.timedelta(hours=8)))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'd.db'}"
        cluster = None
    else:
        cluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database("driver")
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(CARecord).values(id=1, name="ca", role="root", subject="CN=ca",
                                                state="active", key_spec="{}",
                                                created_at=WHEN))
    yield engine
    engine.dispose()
    if cluster is not None:
        cluster.drop_database(url)


def _row(serial: str, **changes: Any) -> dict[str, Any]:
    return {"issuer_id": 1, "serial": serial, "profile": "p", "subject": "CN=张三",
            "not_before": WHEN, "not_after": WHEN + dt.timedelta(days=1), "issued_at": WHEN,
            "der": b"\x30\x00\xff", "status": Status.GOOD, **changes}


def _stored(engine: sa.Engine) -> dict[str, tuple[Any, ...]]:
    """The rows as the database holds them (the driver's values, no SQLAlchemy types)."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT serial, profile, subject, not_before, not_after, issued_at, der, status "
            "FROM certificates").all()
    return {r[0]: tuple(bytes(v) if isinstance(v, memoryview) else v for v in r[1:])
            for r in rows}


def test_it_stores_what_execute_stores_and_reads_back_the_same(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        INSERT(conn, [_row("A1"), _row("A2")])  # an executemany
        INSERT(conn, _row("A3"))  # one row
        conn.execute(sa.insert(CertificateRecord), [_row("B1")])
    stored = _stored(engine)
    assert stored["A1"] == stored["A2"] == stored["A3"] == stored["B1"]
    with engine.connect() as conn:
        read = conn.execute(sa.select(CertificateRecord.__table__).where(
            CertificateRecord.serial == "A1")).mappings().one()
    assert (read["not_before"], read["not_after"], bytes(read["der"]), read["status"],
            read["subject"]) == (WHEN, WHEN + dt.timedelta(days=1), b"\x30\x00\xff",
                                 Status.GOOD, "CN=张三")
    assert read["not_before"].tzinfo is not None


@pytest.mark.parametrize(("change", "error"), [
    ({"not_before": WHEN.replace(tzinfo=None)}, "naive datetime"),
    ({"status": "revoked-ish"}, "revoked-ish"),
])
def test_bad_values_are_refused_and_write_nothing(engine: sa.Engine, change: dict[str, Any],
                                                  error: str) -> None:
    with pytest.raises((ValueError, LookupError, sa.exc.StatementError), match=error), \
            engine.begin() as conn:
        INSERT(conn, [_row("C1"), _row("C2", **change)])
    assert _stored(engine) == {}


def test_a_missing_value_is_named(engine: sa.Engine) -> None:
    row = _row("D1")
    del row["der"]
    with pytest.raises(sa.exc.ArgumentError, match="'der'"), engine.begin() as conn:
        INSERT(conn, row)
    assert _stored(engine) == {}


def test_a_duplicate_key_is_an_integrity_error(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        INSERT(conn, _row("E1"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        INSERT(conn, [_row("E2"), _row("E1")])
    assert set(_stored(engine)) == {"E1"}


def test_the_audit_log_and_the_replay_memory_round_trip(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    for i in range(5):
        log.append("tester", "test.action", f"obj:{i}", "info", details={"i": i, "t": "时间"})
    assert [r.record.details["i"] for r in log.records()] == list(range(5))
    assert verify_log(engine).intact
    store = SqlReplayStore(engine)
    assert store.first_use(b"nonce-1", WHEN)
    assert not store.first_use(b"nonce-1", WHEN)  # a replay
    with engine.connect() as conn:
        expires = conn.execute(sa.select(request_nonces.c.expires_at)).scalar_one()
    assert expires.replace(tzinfo=expires.tzinfo or dt.UTC) == WHEN


def test_it_runs_in_the_connections_transaction(engine: sa.Engine) -> None:
    """Run on a connection with no transaction, it begins one as ``execute`` would: a rollback
    undoes it, a commit keeps it."""
    with engine.connect() as conn:
        INSERT(conn, _row("F1"))
        assert conn.in_transaction()
        conn.rollback()
        INSERT(conn, _row("F2"))
        conn.commit()
    assert set(_stored(engine)) == {"F2"}
