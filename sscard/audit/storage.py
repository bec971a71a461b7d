"""The audit log's tables (SQLAlchemy Core, its own MetaData) and the serialised write
transaction.

Three tables, all prefixed ``audit_`` so that they can live in any service's database:
``audit_head`` (one row: hash algorithm, size, last hash, Merkle frontier, last checkpoint),
``audit_record`` and ``audit_checkpoint``. Every append locks the head row first: ``SELECT ...
FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` (the database write lock) on SQLite, so writers
in many processes queue up and the chain never forks. The primary key on ``seq`` is a second
guard: a fork would be a duplicate key, never a silent branch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    insert,
    select,
    update,
)

from sscard.sqlschema import WRITE, DriverStatement, is_factory_engine

metadata = MetaData()

HEAD_ID = 1

head_table = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("log_id", String(64), nullable=False),
    Column("hash_name", String(16), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("last_hash", LargeBinary, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("checkpoint_count", Integer, nullable=False),
    Column("checkpoint_size", BigInteger, nullable=False),
    Column("checkpoint_digest", LargeBinary, nullable=True),
    Column("checkpoint_time", String(32), nullable=True),
)

record_table = Table(
    "audit_record",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", String(32), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(128), nullable=False),
    Column("object", String(512), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False),
)

checkpoint_table = Table(
    "audit_checkpoint",
    metadata,
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("signature_algorithm", String(32), nullable=False),
    Column("signer_spki", LargeBinary, nullable=False),
    Column("certificate", LargeBinary, nullable=True),
)


# Statements of every append, compiled once and run through the driver (``DriverStatement``):
# building them per append, or SQLAlchemy's per-execution work, costs more than the database.
SELECT_HEAD_FOR_UPDATE = (
    select(head_table).where(head_table.c.id == HEAD_ID).with_for_update()
)
READ_HEAD_FOR_UPDATE = DriverStatement(SELECT_HEAD_FOR_UPDATE)
INSERT_RECORD = DriverStatement(insert(record_table).values(
    {c.name: bindparam(c.name) for c in record_table.columns}))
ADVANCE_HEAD = DriverStatement(
    update(head_table)
    .where(head_table.c.id == HEAD_ID)
    .values(size=bindparam("new_size"), last_hash=bindparam("new_last_hash"),
            frontier=bindparam("new_frontier"))
)


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


@contextlib.contextmanager
def locked_head(engine: Engine) -> Iterator[tuple[Connection, dict[str, Any]]]:
    """A write transaction holding the log's lock, with the head row as read under it.

    Commits when the block ends normally, rolls back on an exception.
    """
    # Two writers must never both read the same head: on SQLite the write lock is taken at
    # BEGIN (IMMEDIATE), before the read; elsewhere the row lock (FOR UPDATE) does it.
    factory = is_factory_engine(engine)
    with engine.connect().execution_options(**WRITE) as conn:
        if factory:
            conn.begin()
        elif is_sqlite(conn):
            # an engine made elsewhere: pysqlite would start a deferred transaction at the
            # first INSERT, so ask for the lock ourselves
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        row = conn.execute(SELECT_HEAD_FOR_UPDATE).mappings().one_or_none()
        if row is None:
            conn.rollback()
            raise LookupError("audit_head row is missing")
        try:
            yield conn, dict(row)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
