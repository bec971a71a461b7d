"""The RA's tables (SQLAlchemy 2 declarative): officers and API clients, cardholders and cards,
requests with their approvals, and pre-authorised enrollment batches.

The schema itself is created by the Alembic migrations in ``ra/migrations``; these classes must
match them (tests/ra/test_store.py compares the two)."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sscard.sqlschema import UTCDateTime


class Role(enum.StrEnum):
    OPERATOR = "operator"  # front desk and issuing staff: submit requests, personalise cards
    OFFICER = "officer"  # decide requests: approve, reject, revoke, key recovery
    AUDITOR = "auditor"  # read-only: requests, search, the audit log
    ADMINISTRATOR = "administrator"  # manage officer accounts


class RequestKind(enum.StrEnum):
    ENROLLMENT = "enrollment"
    REVOCATION = "revocation"
    RENEWAL = "renewal"
    KEY_RECOVERY = "key_recovery"


class RequestState(enum.StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"


class CardStatus(enum.StrEnum):
    PERSONALISING = "personalising"
    ACTIVE = "active"
    SPOILED = "spoiled"  # personalisation rolled back: certificates revoked, card not issued
    REVOKED = "revoked"


class Base(DeclarativeBase):
    pass


TZ = UTCDateTime()


class Officer(Base):
    __tablename__ = "officers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(Text)
    #: comma-separated Role values
    roles: Mapped[str] = mapped_column(String(128))
    #: False until enabled (a new or re-enabled account needs a second administrator)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: the person behind the account (ID number): approvals count people, not accounts
    person_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: the administrator who proposed enabling this account, waiting for a second one
    pending_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: the officer's own certificate (on their card), for certificate login
    certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: its x5t#S256 (RFC 7515: base64url SHA-256 of the DER), how a card log-in names it;
    #: indexed, so the log-in finds the account without reading every officer's certificate
    certificate_x5t_s256: Mapped[str | None] = mapped_column(String(43), nullable=True,
                                                             index=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZ)

    def role_set(self) -> frozenset[Role]:
        return frozenset(Role(r) for r in self.roles.split(",") if r)

    @property
    def person(self) -> str:
        """Who this account belongs to; accounts from before person binding stand alone."""
        return self.person_id or f"account:{self.username}"


class LoginThrottle(Base):
    """Failed log-ins per key (``account:<user>@<source>``, ``source:<source>``): at the limit
    the key is blocked for a back-off period that doubles with each lock-out. The counter is
    taken before the password is checked (an atomic conditional UPDATE), so parallel guesses
    get exactly the limit evaluated."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    account: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    lockouts: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(TZ, nullable=True)
    #: last attempt: keys idle for longer than the longest lock-out are forgotten
    updated_at: Mapped[dt.datetime] = mapped_column(TZ)


class WebSession(Base):
    """A UI session held by the server; the cookie carries only a random token (its SHA-256
    is the key), so log-out, a password change or a lock-out ends it for good."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    #: JSON: CSRF token, language, log-in challenge
    data: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[dt.datetime] = mapped_column(TZ)
    seen_at: Mapped[dt.datetime] = mapped_column(TZ)


class LoginChallenge(Base):
    """A one-time certificate log-in challenge; deleting the row consumes it."""

    __tablename__ = "login_challenges"

    challenge: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(TZ)


class ApiClient(Base):
    """A reader tool, kiosk or service calling the enrollment API with a bearer token (digest
    stored) or by signing its requests with a bound certificate (sscard.httpsig)."""

    __tablename__ = "api_clients"
    __table_args__ = (UniqueConstraint("certificate_sha256", name="uq_api_clients_certificate"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    #: SHA-256 (hex) of the bound certificate's tbsCertificate, for signing clients
    certificate_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZ)


class Cardholder(Base):
    __tablename__ = "cardholders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ssn: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    sex: Mapped[str] = mapped_column(String(1))
    ethnicity: Mapped[str] = mapped_column(String(2))
    birthplace: Mapped[str] = mapped_column(String(6))
    birth_date: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(TZ)


class Card(Base):
    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cardholder_id: Mapped[int] = mapped_column(ForeignKey("cardholders.id"))
    #: card identification code (EF05 tag 01, 16 bytes) in hex
    card_id: Mapped[str] = mapped_column(String(32), unique=True)
    card_number: Mapped[str] = mapped_column(String(9), unique=True)
    generation: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    sign_serial: Mapped[str | None] = mapped_column(String(42), nullable=True)
    enc_serial: Mapped[str | None] = mapped_column(String(42), nullable=True)
    escrow_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZ)


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (Index("ix_requests_state", "state", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    cardholder_id: Mapped[int | None] = mapped_column(ForeignKey("cardholders.id"),
                                                      nullable=True)
    card_ref: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    csr_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    batch_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: revocation and recovery: the certificate concerned; enrollment: the signing certificate
    certificate_serial: Mapped[str | None] = mapped_column(String(42), nullable=True)
    #: JSON: what the request carries beyond the columns (recovery target, revocation reason)
    details: Mapped[str] = mapped_column(Text, default="{}")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZ)
    updated_at: Mapped[dt.datetime] = mapped_column(TZ)
    #: optimistic lock: every UPDATE checks and bumps it (two decisions at once: one wins)
    version: Mapped[int] = mapped_column(Integer, default=1)
    #: an approved request being carried out since then (exactly one executor at a time)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(TZ, nullable=True)

    __mapper_args__ = {"version_id_col": version}


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("request_id", "officer", name="uq_approvals_officer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"))
    officer: Mapped[str] = mapped_column(String(64))
    #: the officer's person (Officer.person): two accounts of one person are one approver
    person: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decision: Mapped[str] = mapped_column(String(8))  # approve | reject
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(TZ)


class BatchAuthorisation(Base):
    """An officer's pre-authorisation of a named batch of up to ``limit`` enrollments, for one
    station (API client), optionally only the listed cardholders, until ``expires_at``."""

    __tablename__ = "batch_authorisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    authorised_by: Mapped[str] = mapped_column(String(64))
    limit: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZ)
    #: the API client that may submit into it (batches from before binding: none)
    station: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: JSON list of social security numbers, or null for any cardholder (up to ``limit``)
    cardholders: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(TZ, nullable=True)
