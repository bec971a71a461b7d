"""The CA's database: SQLAlchemy 2 models, engines for SQLite and PostgreSQL, Alembic upgrades.

SQLite is the embedded default (``<home>/ca.db``, WAL, a busy timeout so that several processes
can write one file); PostgreSQL is selected by URL. The schema is created and upgraded only by
the Alembic migrations in ``ca/migrations``; the models here mirror them for queries.

Serial numbers exceed 64 bits, more than any SQL integer type holds, so they are stored as
upper-case hexadecimal text (``serial_to_hex``) under a unique constraint per issuer.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sscard.sqlschema import alembic_upgrade

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 60_000


class Base(DeclarativeBase):
    pass


class CARecord(Base):
    """A CA of the hierarchy: the root or an issuing CA."""

    __tablename__ = "cas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # root | issuing
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cas.id"))
    subject: Mapped[str] = mapped_column(Text)
    # pending: an issuing CA whose CSR waits for an offline root; active: certificate present
    state: Mapped[str] = mapped_column(String(16))
    key_spec: Mapped[str] = mapped_column(Text)  # JSON: where the key handle lives
    certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    csr_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # bumped with every revocation of this CA's certificates (migration 0002)
    revocation_generation: Mapped[int] = mapped_column(BigInteger, default=0,
                                                       server_default="0")


class CertificateRecord(Base):
    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("issuer_id", "serial", name="uq_certificates_issuer_serial"),
        Index("ix_certificates_issuer_revoked", "issuer_id", "revoked_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    serial: Mapped[str] = mapped_column(String(42))  # upper-case hex, as openssl prints it
    profile: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))  # good | revoked
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revocation_reason: Mapped[int | None] = mapped_column(Integer)
    invalidity_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RequestRecord(Base):
    """What a certificate was issued from: the CSR, or the subject and key of a direct request."""

    __tablename__ = "requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    kind: Mapped[str] = mapped_column(String(16))  # csr | public_key
    profile: Mapped[str] = mapped_column(String(64))
    request_der: Mapped[bytes] = mapped_column(LargeBinary)  # CSR, or the SPKI
    certificate_serial: Mapped[str] = mapped_column(String(42))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CRLRecord(Base):
    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("issuer_id", "number", name="uq_crls_issuer_number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    number: Mapped[int] = mapped_column(Integer)
    is_delta: Mapped[bool] = mapped_column(Boolean)
    base_number: Mapped[int | None] = mapped_column(Integer)  # for a delta: its base CRL
    this_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    der: Mapped[bytes] = mapped_column(LargeBinary)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """An engine with the settings the CA relies on.

    SQLite: WAL so readers never block the writer; a long busy timeout so that concurrent
    writers queue instead of failing; and writing transactions opened with ``BEGIN IMMEDIATE``
    (``write_transaction``) so two processes never both read and then collide on upgrading to
    a write lock, which SQLite reports as an immediate, un-retried "database is locked".
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of the process
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = "IMMEDIATE" if conn.get_execution_options().get("ca_write") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine) -> None:
    """Apply the CA's Alembic migrations up to head (a no-op when the schema is current)."""
    alembic_upgrade(engine, MIGRATIONS_DIR, ca_write=True)
