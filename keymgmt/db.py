"""The KMC's own database: SQLAlchemy 2 models, engines for SQLite and PostgreSQL, Alembic.

SQLite is the embedded default (``<home>/kmc.db``); PostgreSQL is selected by URL. The schema is
created and upgraded only by the Alembic migrations in ``keymgmt/migrations`` (version table
``kmc_alembic_version``, so the KMC can share a PostgreSQL database with nobody's surprise).

Nothing secret is stored in clear: private keys and card master keys are columns named
``wrapped_*``, AES-GCM under the storage key; API keys are stored as SHA-256 digests (they are
256-bit random tokens, so a slow password hash would add nothing).
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Engine,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sscard import sqlschema
from sscard.sqlschema import UTCDateTime, alembic_upgrade
from sscard.sqlschema import sqlite_url as sqlite_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "kmc_alembic_version"


class RecoveryStatus(enum.StrEnum):
    """Where a key recovery request stands (the recovery_requests.status column)."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    COMPLETED = "completed"


class Base(DeclarativeBase):
    pass


class CallerRecord(Base):
    """An authenticated caller: the CA, the RA, an officer, an auditor."""

    __tablename__ = "kmc_callers"
    __table_args__ = (UniqueConstraint("certificate_sha256", name="uq_kmc_callers_certificate"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    api_key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    #: a service identity: SHA-256 (hex) of its certificate's tbsCertificate; it signs its
    #: requests (sscard.httpsig) and its API key is never shown
    certificate_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EscrowedKeyRecord(Base):
    """An escrowed encryption key pair: public key in clear, private key wrapped."""

    __tablename__ = "kmc_escrowed_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_key_spki: Mapped[bytes] = mapped_column(LargeBinary)
    public_key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    wrapped_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    storage_key_id: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    certificate_serial: Mapped[str | None] = mapped_column(String(42), index=True)
    certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: "<caller>/<its request id>" when the caller named one, and the SHA-256 of the public
    #: key the private key was enveloped for (migration 0004): asked again, the same key
    request_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    recipient_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class RecoveryRequestRecord(Base):
    __tablename__ = "kmc_recovery_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    escrowed_key_id: Mapped[int] = mapped_column(ForeignKey("kmc_escrowed_keys.id"))
    requested_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    recipient_kind: Mapped[str] = mapped_column(String(16))  # card | pkcs12
    recipient_spki: Mapped[bytes | None] = mapped_column(LargeBinary)
    recipient_officer: Mapped[str | None] = mapped_column(String(128))
    judicial: Mapped[bool] = mapped_column(Boolean)
    judicial_authority: Mapped[str | None] = mapped_column(Text)
    judicial_order_ref: Mapped[str | None] = mapped_column(Text)
    judicial_document_sha256: Mapped[str | None] = mapped_column(String(64))
    required_approvals: Mapped[int] = mapped_column(Integer)
    # a value outside RecoveryStatus is refused before it reaches the database
    status: Mapped[RecoveryStatus] = mapped_column(Enum(
        RecoveryStatus, native_enum=False, create_constraint=False, length=16,
        validate_strings=True, values_callable=lambda members: [m.value for m in members]))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApprovalRecord(Base):
    __tablename__ = "kmc_approvals"
    __table_args__ = (
        UniqueConstraint("request_id", "officer", name="uq_kmc_approvals_request_officer"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("kmc_recovery_requests.id"))
    officer: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CardMasterKeyRecord(Base):
    """A provincial-level card master key (SM4 or 3DES), wrapped under the storage key."""

    __tablename__ = "kmc_card_master_keys"
    __table_args__ = (
        UniqueConstraint("province_code", "key_id", "algorithm", "version",
                         name="uq_kmc_cmk_province_key_alg_version"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    province_code: Mapped[str] = mapped_column(String(2))
    key_id: Mapped[int] = mapped_column(Integer)  # the card's key id (P2 of 00 82)
    usage: Mapped[str] = mapped_column(String(32))
    algorithm: Mapped[str] = mapped_column(String(8))  # sm4 | 3des
    version: Mapped[int] = mapped_column(Integer)
    key_check_value: Mapped[str] = mapped_column(String(16))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    storage_key_id: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EventRecord(Base):
    """The KMC's event log: who did what to which key, never a key value."""

    __tablename__ = "kmc_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(128))
    details: Mapped[str] = mapped_column(Text)  # JSON


class TerminalBindingRecord(Base):
    """What a terminal caller may ask card-key answers for: regions (2-, 4- or 6-digit prefixes
    of the 6-digit region code), optionally one terminal id (its PSAM / terminal number), and
    a rate. ``window_start``/``used`` count the current minute, updated atomically."""

    __tablename__ = "kmc_terminal_bindings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    caller_name: Mapped[str] = mapped_column(String(128), unique=True)
    regions: Mapped[str] = mapped_column(String(512))  # comma-separated
    terminal_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rate_per_minute: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    used: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


def default_url(home: Path) -> str:
    return sqlite_url(Path(home) / "kmc.db")


def make_engine(url: str) -> Engine:
    """The KMC's engine: every KMC transaction may write (the event log), so each one takes
    SQLite's write lock at BEGIN rather than fail on a lock upgrade under concurrency."""
    return sqlschema.make_engine(url, immediate=True)


def upgrade(engine: Engine) -> None:
    """Apply the KMC's Alembic migrations up to head (a no-op when the schema is current)."""
    alembic_upgrade(engine, MIGRATIONS_DIR, version_table=VERSION_TABLE)
