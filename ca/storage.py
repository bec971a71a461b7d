"""The CA's database: SQLAlchemy 2 models, engines for SQLite and PostgreSQL, Alembic upgrades.

SQLite is the embedded default (``<home>/ca.db``, opened by ``sscard.sqlschema.make_engine``:
WAL, synchronous=FULL, writes under BEGIN IMMEDIATE); PostgreSQL is selected by URL. The schema
is created and upgraded only by the Alembic migrations in ``ca/migrations``; the models here
mirror them for queries.

Serial numbers exceed 64 bits, more than any SQL integer type holds, so they are stored as
upper-case hexadecimal text (``serial_to_hex``) under a unique constraint per issuer.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Engine,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ca.records import Status
from sscard.sqlschema import UTCDateTime, alembic_upgrade
from sscard.sqlschema import make_engine as make_engine  # the CA's callers open it from here
from sscard.sqlschema import sqlite_url as sqlite_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
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
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    der: Mapped[bytes] = mapped_column(LargeBinary)
    # good | revoked; a value outside the enum is refused before it reaches the database
    status: Mapped[Status] = mapped_column(Enum(
        Status, native_enum=False, create_constraint=False, length=16, validate_strings=True,
        values_callable=lambda members: [m.value for m in members]))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revocation_reason: Mapped[int | None] = mapped_column(Integer)
    invalidity_date: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RequestRecord(Base):
    """What a certificate was issued from: the CSR, or the subject and key of a direct request."""

    __tablename__ = "requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    kind: Mapped[str] = mapped_column(String(16))  # csr | public_key
    profile: Mapped[str] = mapped_column(String(64))
    request_der: Mapped[bytes] = mapped_column(LargeBinary)  # CSR, or the SPKI
    certificate_serial: Mapped[str] = mapped_column(String(42))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: "<caller>/<its request id>" when the caller named one (migration 0003): asked again, the
    #: CA answers with the certificate issued the first time (unique index)
    request_key: Mapped[str | None] = mapped_column(String(300), nullable=True)


class CRLRecord(Base):
    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("issuer_id", "number", name="uq_crls_issuer_number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    number: Mapped[int] = mapped_column(Integer)
    is_delta: Mapped[bool] = mapped_column(Boolean)
    base_number: Mapped[int | None] = mapped_column(Integer)  # for a delta: its base CRL
    this_update: Mapped[datetime] = mapped_column(UTCDateTime())
    next_update: Mapped[datetime] = mapped_column(UTCDateTime())
    der: Mapped[bytes] = mapped_column(LargeBinary)


def upgrade(engine: Engine) -> None:
    """Apply the CA's Alembic migrations up to head (a no-op when the schema is current)."""
    alembic_upgrade(engine, MIGRATIONS_DIR)
