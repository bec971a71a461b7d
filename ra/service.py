"""The registration authority's library API: officers and their log-in, cardholders and cards,
requests and their approval (dual control), and the calls to the CA and the KMC that an approved
request leads to. The web UI, the enrollment API and the reader tools call only this.

Every security action runs inside ``AuditLog.operation``: no audit record, no action. Approval
decisions come from the pure functions in ``ra.policy``."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from asn1crypto import x509
from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from ca.errors import AlreadyRevoked, CAError, CaUnavailable, UnknownCertificate
from ca.records import MAX_BATCH_ITEMS, IssuedCertificate, Status
from keymgmt.errors import KmcError, KmcUnavailable
from ra import store, throttle
from ra.errors import (
    AuthenticationFailed,
    BadRequest,
    ConcurrentChange,
    Conflict,
    Forbidden,
    NotFound,
    UpstreamFailed,
    UpstreamUnavailable,
)
from ra.models import (
    ApiClient,
    Approval,
    BatchAuthorisation,
    Card,
    Cardholder,
    CardStatus,
    LoginChallenge,
    Officer,
    Request,
    RequestKind,
    RequestState,
    Role,
    WebSession,
)
from ra.policy import BatchFacts, Decision, Policy, RequestFacts, batch_covers, decide
from ra.ports import CaPort, KmcPort
from sscard import httpsig
from sscard.audit.log import AuditLog, format_time
from sscard.card.codec import CodecError
from sscard.card.records import HolderData
from sscard.card.validation import CardDataError
from sscard.clock import Clock, system_clock
from sscard.crypto.algorithms import KeyAlgorithm, SignatureAlgorithm
from sscard.crypto.errors import CryptoError
from sscard.x509.errors import BuilderError, X509Error
from sscard.x509.names import format_name, name_attribute, parse_name
from sscard.x509.parse import load_certificate, load_csr
from sscard.x509.values import RevocationReason, Serial
from sscard.x509.verify import verify_csr

MIN_PASSWORD = 10
#: every refused log-in gets this one answer: it never tells whether the account exists, the
#: password was wrong or the account is locked out
LOGIN_REFUSED = ("log-in refused: wrong user name or password, or too many failed attempts "
                 "(wait, or ask an administrator to unlock the account)")
CERTIFICATE_LOGIN_REFUSED = ("certificate log-in refused: no such account with a registered "
                             "certificate, the certificate is invalid or revoked, or the "
                             "signature does not verify")
CARD_LOGIN_REFUSED = ("log-in with the card refused: the card's certificate is registered for "
                      "no enabled officer account, or the account is locked out")
#: a decision that lost a race to another officer's is re-evaluated this many times
DECISION_RETRIES = 5
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))




def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _x5t_s256(der: bytes) -> str:
    """A certificate's ``x5t#S256`` (RFC 7515): base64url SHA-256 of its DER, no padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _subject_difference(subject: Any, ssn: str, name: str) -> str:
    """What makes a CSR's subject differ from the cardholder's, in words."""
    wanted = {"common_name": ("CN", name, "the cardholder's name"),
              "serial_number": ("serialNumber", ssn, "the cardholder's social security number"),
              "country_name": ("C", "CN", "the country")}
    seen: list[str] = []
    problems = []
    for rdn in subject.chosen:
        for atv in rdn:
            kind = atv["type"].native
            seen.append(kind)
            if kind not in wanted:
                problems.append(f"{atv['type'].dotted if kind == atv['type'].dotted else kind}"
                                " is not allowed")
                continue
            short, value, what = wanted[kind]
            if str(atv["value"].native) != value:
                problems.append(f"{short} {atv['value'].native!r} is not {what} {value!r}")
    problems += [f"{short} is missing" for kind, (short, _v, _w) in wanted.items()
                 if kind not in seen]
    problems += [f"{kind} appears more than once" for kind in sorted(set(seen))
                 if seen.count(kind) > 1]
    return "; ".join(problems) or "attributes in another order or string type"


@dataclass(frozen=True)
class Actor:
    """Who calls: an officer (by session) or an API client (by token, acting as operator)."""

    name: str
    roles: frozenset[Role]
    client: bool = False
    #: the person behind an officer account (ID number), when known
    person: str | None = None
    #: the RA itself (carrying on requests that waited for the CA or the KMC), nobody's account
    service: bool = False

    @property
    def audit_name(self) -> str:
        kind = "service" if self.service else "client" if self.client else "officer"
        return f"{kind}:{self.name}"


#: who carries on approved requests whose execution stopped (the audit records name it)
RESUMER = Actor("ra-resume", frozenset(), service=True)


@dataclass(frozen=True)
class CardInput:
    card_id: str  # EF05 card identification code, 32 hex digits
    card_number: str
    generation: int = 3


@dataclass(frozen=True)
class RAConfig:
    #: wrong passwords per account and source before that pair is locked out
    max_failed_logins: int = 5
    #: wrong passwords from one source (any accounts) before the source is locked out
    max_failed_per_source: int = 20
    #: the first lock-out's length; each further one doubles it, up to ``lockout_max``
    lockout: dt.timedelta = dt.timedelta(minutes=5)
    lockout_max: dt.timedelta = dt.timedelta(hours=24)
    #: a certificate log-in challenge is good once, for this long
    challenge_ttl: dt.timedelta = dt.timedelta(minutes=2)
    #: a UI session ends after this long without a request
    session_idle: dt.timedelta = dt.timedelta(minutes=30)
    policy: Policy = field(default_factory=Policy)
    sign_profile: str = "cardholder-sign"
    enc_profile: str = "cardholder-encrypt"
    #: an approved request untouched this long is taken as stalled and resumed on resubmission
    resume_after: dt.timedelta = dt.timedelta(minutes=2)


@contextmanager
def _reaching_the_ca() -> Iterator[None]:
    """A read from the CA that cannot be made now (CA out of reach): refused as such, 503."""
    try:
        yield
    except CaUnavailable as exc:
        raise UpstreamUnavailable(f"the CA cannot be reached now ({exc}); try again later",
                                  "ca_unreachable", detail=str(exc)) from None


def _waiting(exc: CaUnavailable | KmcUnavailable) -> UpstreamUnavailable:
    service = "CA" if isinstance(exc, CaUnavailable) else "KMC"
    return UpstreamUnavailable(f"waiting for the {service}, which cannot be reached now ({exc}); "
                               "the request stays approved and is carried on when resubmitted",
                               f"waiting_for_{service.lower()}", detail=str(exc))


class RegistrationAuthority:
    def __init__(self, engine: Engine, audit: AuditLog, ca: CaPort | None = None,
                 kmc: KmcPort | None = None, config: RAConfig | None = None, *,
                 clock: Clock = system_clock) -> None:
        #: what the RA reads the time from (lock-outs, batches, sessions, claims); tests hand
        #: in a sscard.clock.FakeClock and advance it instead of sleeping
        self.clock = clock
        self.engine = engine
        self.audit = audit
        self.ca = ca
        self.kmc = kmc
        self.config = config or RAConfig()
        #: identities (sscard.httpsig, hex) of the API clients' certificates that may look
        #: card numbers up (the identity provider's); set by the web layer from its WebConfig
        self.card_number_readers: frozenset[str] = frozenset()
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._throttle = throttle.Throttle(self._tx, self.config.lockout,
                                           self.config.lockout_max, clock)

    @classmethod
    def open(cls, url: str, audit: AuditLog, ca: CaPort | None = None, kmc: KmcPort | None = None,
             config: RAConfig | None = None, *,
             clock: Clock = system_clock) -> RegistrationAuthority:
        # decisions read, then write: on SQLite every transaction takes the write lock at BEGIN
        engine = store.make_engine(url, immediate=True)
        store.upgrade(engine)
        return cls(engine, audit, ca, kmc, config, clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        try:
            with self._sessions() as s, s.begin():
                yield s
        except StaleDataError:
            raise ConcurrentChange("the record changed meanwhile (another officer or station "
                                   "acted at the same time); try again",
                                   "concurrent_change") from None

    def _need(self, actor: Actor, *roles: Role, clients: bool = False) -> None:
        """Refuse unless ``actor`` holds one of ``roles`` now, as the database has it: an
        Actor's own role claims count for nothing, a disabled account can do nothing, and a
        station (API client) only what is marked ``clients`` (its enrollments)."""
        with self._tx() as s:
            if actor.client:
                client = s.scalar(select(ApiClient).where(ApiClient.name == actor.name))
                ok = clients and client is not None and client.active
            else:
                officer = s.scalar(select(Officer).where(Officer.username == actor.name))
                ok = officer is not None and officer.active and \
                    bool(officer.role_set() & set(roles))
        if not ok:
            raise Forbidden(f"{actor.name} may not do this; it needs the role "
                            f"{' or '.join(r.value for r in roles)}", "role_needed",
                            name=actor.name, roles=[r.value for r in roles])

    @staticmethod
    def _own(actor: Actor, req: Request) -> None:
        """A station sees and acts on its own requests only."""
        if actor.client and req.requested_by != actor.name:
            raise Forbidden(f"request {req.public_id} was filed by another client",
                            "another_clients_request", request_id=req.public_id)

    # -- officers -----------------------------------------------------------------------------

    def add_officer(self, actor: Actor | None, username: str, display_name: str, password: str,
                    roles: set[Role] | frozenset[Role], *, person_id: str) -> None:
        """Create an officer account for the person ``person_id`` (their ID number).
        ``actor`` None is the RA machine's console (set-up): the account is enabled at once.
        An account an administrator creates waits until a second administrator enables it
        (``enable_officer``)."""
        if actor is not None:
            self._need(actor, Role.ADMINISTRATOR)
        if not username or len(username) > 64 or not username.replace("-", "").replace(
                "_", "").replace(".", "").isalnum():
            raise BadRequest(f"user name {username!r}: 1-64 letters, digits, '-', '_' or '.'",
                             "bad_username", username=username)
        if not person_id or len(person_id) > 64 or not person_id.isascii() \
                or not person_id.isalnum():
            raise BadRequest("the officer's person ID (ID number) must be 1-64 letters or "
                             "digits", "bad_person_id")
        if len(password) < MIN_PASSWORD:
            raise BadRequest(f"the password must have at least {MIN_PASSWORD} characters",
                             "password_too_short", n=MIN_PASSWORD)
        if not roles:
            raise BadRequest("an officer needs at least one role", "no_role")
        if Role.ADMINISTRATOR in roles and len(roles) > 1:
            raise BadRequest("an administrator account administers accounts only; give the "
                             "person a second account for " + ", ".join(
                                 sorted(r.value for r in roles if r is not Role.ADMINISTRATOR)),
                             "administrator_only",
                             roles=sorted(r.value for r in roles if r is not Role.ADMINISTRATOR))
        who = actor.audit_name if actor else "setup"
        with self.audit.operation(who, "ra.officer.add", username,
                                  details={"roles": sorted(r.value for r in roles),
                                           "person": person_id,
                                           "enabled": actor is None}):
            try:
                with self._tx() as s:
                    s.add(Officer(username=username, display_name=display_name or username,
                                  password_hash=_HASHER.hash(password),
                                  roles=",".join(sorted(r.value for r in roles)),
                                  active=actor is None, person_id=person_id,
                                  pending_by=actor.name if actor else None,
                                  created_at=self.clock()))
            except IntegrityError:
                raise Conflict(f"an officer named {username!r} already exists", "officer_exists",
                               username=username) from None

    def enable_officer(self, actor: Actor, username: str) -> bool:
        """Dual control over accounts: the first administrator's call proposes enabling a
        disabled account (new accounts are proposed by their creator), a second administrator
        (another person) enables it. Returns whether the account is now enabled."""
        self._need(actor, Role.ADMINISTRATOR)
        with self.audit.operation(actor.audit_name, "ra.officer.enable", username) as op, \
                self._tx() as s:
            officer = self._officer(s, username)
            me = self._officer(s, actor.name)
            if officer.active:
                raise Conflict(f"officer {username} is already enabled", "officer_enabled",
                               username=username)
            if officer.person == me.person:
                op.deny("own account")
                raise Forbidden("an administrator cannot enable an account of their own person",
                                "own_account")
            if officer.pending_by is None:
                officer.pending_by = actor.name
                op.set(state="proposed")
                return False
            proposer = s.scalar(select(Officer).where(Officer.username == officer.pending_by))
            if officer.pending_by == actor.name or (proposer is not None
                                                    and proposer.person == me.person):
                op.deny("same administrator")
                raise Forbidden(f"officer {username} was proposed by {officer.pending_by}; a "
                                "second administrator (another person) must enable it",
                                "same_administrator", username=username,
                                proposer=officer.pending_by)
            officer.active, officer.pending_by = True, None
            op.set(state="enabled", proposed_by=proposer.username if proposer else "")
            return True

    def disable_officer(self, actor: Actor, username: str) -> None:
        """Disable an account at once (one administrator suffices) and end its sessions."""
        self._need(actor, Role.ADMINISTRATOR)
        with self.audit.operation(actor.audit_name, "ra.officer.disable", username), \
                self._tx() as s:
            officer = self._officer(s, username)
            officer.active, officer.pending_by = False, None
            self._end_sessions(s, username)

    def set_officer_certificate(self, actor: Actor | None, username: str,
                                certificate_der: bytes) -> None:
        """Register the certificate of the officer's own card for certificate log-in;
        ``actor`` None is the RA machine's console (set-up). The certificate names the
        account's person (subject serialNumber) and belongs to no other account."""
        if actor is not None:
            self._need(actor, Role.ADMINISTRATOR)
        try:
            cert = load_certificate(certificate_der)
        except X509Error as exc:
            raise BadRequest(str(exc), "bad_certificate", detail=str(exc)) from None
        certificate_der = cert.dump()
        who = actor.audit_name if actor else "setup"
        with self.audit.operation(who, "ra.officer.certificate", username), \
                self._tx() as s:
            officer = self._officer(s, username)
            holder = name_attribute(cert.subject, "serial_number")
            if officer.person_id is not None and holder != officer.person_id:
                raise BadRequest(f"the certificate names person {holder or '(none)'}, not the "
                                 f"account's person {officer.person_id}",
                                 "certificate_other_person")
            fingerprint = _x5t_s256(certificate_der)
            other = s.scalar(select(Officer.username).where(
                Officer.certificate_x5t_s256 == fingerprint, Officer.username != username))
            if other is not None:
                raise Conflict(f"this certificate is already registered for {other}",
                               "certificate_taken", username=other)
            officer.certificate_der = certificate_der
            officer.certificate_x5t_s256 = fingerprint

    def unlock_officer(self, actor: Actor | None, username: str) -> None:
        """Lift every lock-out of the account (from any source); ``actor`` None is the RA
        machine's console (``sscard ra officer unlock``)."""
        if actor is not None:
            self._need(actor, Role.ADMINISTRATOR)
        who = actor.audit_name if actor else "console"
        with self.audit.operation(who, "ra.officer.unlock", username), self._tx() as s:
            self._officer(s, username)
            self._throttle.unlock(s, username)

    def officers(self, actor: Actor) -> list[dict[str, Any]]:
        self._need(actor, Role.ADMINISTRATOR, Role.AUDITOR)
        with self._tx() as s:
            locked = self._throttle.locked_accounts(s)
            return [{"username": o.username, "display_name": o.display_name,
                     "roles": o.roles, "person_id": o.person_id, "active": o.active,
                     "pending_by": o.pending_by, "locked": o.username in locked,
                     "certificate": o.certificate_der is not None}
                    for o in s.scalars(select(Officer).order_by(Officer.username))]

    @staticmethod
    def _officer(s: Session, username: str) -> Officer:
        officer = s.scalar(select(Officer).where(Officer.username == username))
        if officer is None:
            raise NotFound(f"no officer named {username!r}", "no_officer", username=username)
        return officer

    # -- log-in -------------------------------------------------------------------------------

    def authenticate(self, username: str, password: str, source: str = "-") -> Actor:
        """Check a password, from ``source`` (the client's address). Failures count per account
        and source and per source; at the limit that pair (or source) is locked out for a
        back-off period, and the account's sessions end. Unknown accounts count the same way,
        and every refusal has the one message ``LOGIN_REFUSED``."""
        account_key, source_key = throttle.keys(username, source)
        actor: Actor | None = None
        with self.audit.operation(f"officer:{username or '-'}", "ra.login", username or "-",
                                  details={"method": "password", "source": source}) as op:
            if not (self._throttle.take(source_key, None, self.config.max_failed_per_source)
                    and self._throttle.take(account_key, username,
                                            self.config.max_failed_logins)):
                op.deny("locked out, password not checked")
            else:
                actor = self._check_password(username, password)
                if actor is not None:
                    self._throttle.succeeded(account_key, source_key)
                else:
                    locked = self._throttle.failed(account_key, self.config.max_failed_logins)
                    self._throttle.failed(source_key, self.config.max_failed_per_source)
                    if locked:
                        with self._tx() as s:
                            self._end_sessions(s, username)
                    op.deny(f"wrong password{' (locked out)' if locked else ''}")
        if actor is None:
            raise AuthenticationFailed(LOGIN_REFUSED, "login_refused")
        return actor

    def _check_password(self, username: str, password: str) -> Actor | None:
        with self._tx() as s:
            officer = s.scalar(select(Officer).where(Officer.username == username))
            stored = officer.password_hash if officer is not None else _DUMMY_HASH
            try:
                # the same argon2 work for unknown accounts: no enumeration by timing
                _HASHER.verify(stored, password)
            except (VerificationError, InvalidHashError):
                return None
            if officer is None or not officer.active:
                return None
            if _HASHER.check_needs_rehash(officer.password_hash):
                officer.password_hash = _HASHER.hash(password)
            return Actor(officer.username, officer.role_set(), person=officer.person)

    def change_password(self, username: str, old_password: str, new_password: str,
                        source: str = "-") -> None:
        """The officer changes their own password (the old one checked like a log-in); every
        session of the account ends."""
        if len(new_password) < MIN_PASSWORD:
            raise BadRequest(f"the password must have at least {MIN_PASSWORD} characters",
                             "password_too_short", n=MIN_PASSWORD)
        self.authenticate(username, old_password, source)
        with self.audit.operation(f"officer:{username}", "ra.officer.password", username), \
                self._tx() as s:
            self._officer(s, username).password_hash = _HASHER.hash(new_password)
            self._end_sessions(s, username)

    def session_actor(self, username: str) -> Actor | None:
        """The officer behind a web session, as the database has them now: a disabled account
        has no session, and role changes apply at once."""
        with self._tx() as s:
            officer = s.scalar(select(Officer).where(Officer.username == username))
            if officer is None or not officer.active:
                return None
            return Actor(officer.username, officer.role_set(), person=officer.person)

    # -- web sessions and log-in challenges ---------------------------------------------------

    def session_load(self, token: str) -> tuple[str | None, dict[str, Any]] | None:
        """The (user name, data) of a live session, touching it; None when unknown or idle
        too long (an idle session is deleted)."""
        now = self.clock()
        with self._tx() as s:
            row = s.get(WebSession, token_digest(token))
            if row is None:
                return None
            if now - row.seen_at > self.config.session_idle:
                s.delete(row)
                return None
            row.seen_at = now
            return row.username, dict(json.loads(row.data))

    def session_save(self, token: str, username: str | None, data: dict[str, Any]) -> None:
        """Create or update a session. Sessions idle past their limit are swept on creation."""
        now = self.clock()
        with self._tx() as s:
            row = s.get(WebSession, token_digest(token))
            if row is None:
                s.execute(delete(WebSession).where(
                    WebSession.seen_at < now - self.config.session_idle))
                s.add(WebSession(token_sha256=token_digest(token), username=username,
                                 data=json.dumps(data), created_at=now, seen_at=now))
            else:
                row.username, row.data, row.seen_at = username, json.dumps(data), now

    def session_end(self, token: str) -> None:
        with self._tx() as s:
            s.execute(delete(WebSession).where(WebSession.token_sha256 == token_digest(token)))

    @staticmethod
    def _end_sessions(s: Session, username: str) -> None:
        s.execute(delete(WebSession).where(WebSession.username == username))

    def new_login_challenge(self) -> bytes:
        """A one-time challenge for certificate log-in, held by the server until used."""
        challenge = secrets.token_bytes(32)
        now = self.clock()
        with self._tx() as s:
            s.execute(delete(LoginChallenge).where(LoginChallenge.expires_at < now))
            s.add(LoginChallenge(challenge=challenge.hex(),
                                 expires_at=now + self.config.challenge_ttl))
        return challenge

    def _consume_challenge(self, challenge: bytes) -> bool:
        """Use a challenge up: an atomic DELETE, so a captured log-in never replays."""
        with self._tx() as s:
            gone = s.execute(delete(LoginChallenge).where(
                LoginChallenge.challenge == challenge.hex(),
                LoginChallenge.expires_at > self.clock()))
            return bool(gone.rowcount == 1)  # type: ignore[attr-defined]

    def authenticate_certificate(self, username: str, challenge: bytes,
                                 signature: bytes) -> Actor:
        """Certificate log-in: ``signature`` (SM2 with SM3, DER) over the server's one-time
        ``challenge`` (from ``new_login_challenge``, consumed here whatever the outcome) by the
        key of the officer's registered certificate (on their card); the certificate must
        validate up to this CA's root and be unrevoked. Every refusal but a spent challenge
        gets the one message ``CERTIFICATE_LOGIN_REFUSED``; the reason goes to the audit log."""
        with self.audit.operation(f"officer:{username or '-'}", "ra.login", username or "-",
                                  details={"method": "certificate"}) as op:
            if not self._consume_challenge(challenge):
                op.deny("unknown, used or expired challenge")
                spent = True
            else:
                spent = False
                actor, why = self._check_certificate_login(username, challenge, signature)
                if actor is None:
                    op.deny(why)
        if spent:
            raise AuthenticationFailed("the log-in challenge is unknown, used or expired; "
                                       "reload the page", "challenge_spent")
        if actor is None:
            raise AuthenticationFailed(CERTIFICATE_LOGIN_REFUSED, "certificate_login_refused")
        return actor

    def _check_certificate_login(self, username: str, challenge: bytes,
                                 signature: bytes) -> tuple[Actor | None, str]:
        """(the officer, "") or (None, why not)."""
        from sscard.crypto.asymmetric import PublicKey
        from sscard.validation import validate_path

        with self._tx() as s:
            officer = s.scalar(select(Officer).where(Officer.username == username))
            if officer is None or not officer.active or officer.certificate_der is None:
                return None, "no enabled officer with a registered certificate"
            cert_der = officer.certificate_der
            roles, person = officer.role_set(), officer.person
        if self.ca is None:
            raise UpstreamFailed("certificate log-in needs the CA", "certificate_login_needs_ca")
        cert = load_certificate(cert_der)
        with _reaching_the_ca():
            chain = [load_certificate(der) for der in self.ca.chain()]
        result = validate_path(cert, trust_anchors=[chain[-1]], intermediates=chain[:-1])
        if not result.valid:
            return None, "certificate invalid: " + "; ".join(r.message for r in result.reasons)
        with _reaching_the_ca():
            good = self.ca.status(Serial(cert.serial_number)) == Status.GOOD
        if not good:
            return None, "certificate revoked"
        key = PublicKey.from_spki(cert["tbs_certificate"]["subject_public_key_info"].dump())
        try:
            key.verify(signature, challenge, SignatureAlgorithm.SM2_SM3)
        except CryptoError:
            return None, "bad signature"
        return Actor(username, roles, person=person), ""

    def authenticate_card(self, fingerprint: str, profile: str, ssn: str,
                          profiles: frozenset[str], source: str = "-") -> Actor:
        """Card log-in through the OpenID Connect provider (``ra.cardlogin``): the provider
        has checked the card's signature, the certificate's path, revocation and profile; its
        ID token (verified by the caller) names the certificate by ``fingerprint``
        (``x5t#S256``) and ``profile``. The officer is the one account that registered exactly
        that certificate (``set_officer_certificate``), of a profile in ``profiles``, for the
        person ``ssn``, enabled, and not locked out from ``source``; the RA asks its own CA
        again whether the certificate is revoked when that CA issued it. Failures count
        against the source like wrong passwords; every refusal has the one message
        ``CARD_LOGIN_REFUSED`` and the reason goes to the audit log."""
        _account, source_key = throttle.keys("-", source)
        actor: Actor | None = None
        with self.audit.operation(f"card:{fingerprint[:64] or '-'}", "ra.login", "-",
                                  details={"method": "card", "source": source,
                                           "profile": profile[:64]}) as op:
            if not self._throttle.take(source_key, None, self.config.max_failed_per_source):
                op.deny("source locked out, card not checked")
            else:
                actor, why, account_key = self._check_card_login(fingerprint, profile, ssn,
                                                                 profiles, source)
                if actor is None:
                    self._throttle.failed(source_key, self.config.max_failed_per_source)
                    if account_key:
                        self._throttle.failed(account_key, self.config.max_failed_logins)
                    op.deny(why)
                else:
                    self._throttle.succeeded(account_key, source_key)
                    op.set(officer=actor.name)
        if actor is None:
            raise AuthenticationFailed(CARD_LOGIN_REFUSED, "card_login_refused")
        return actor

    def _check_card_login(self, fingerprint: str, profile: str, ssn: str,
                          profiles: frozenset[str], source: str
                          ) -> tuple[Actor | None, str, str]:
        """(the officer or None, why not, the throttle key of the account once found)."""
        if profile not in profiles:
            return None, f"certificate profile {profile!r} is not one officers log in with", ""
        with self._tx() as s:
            found = list(s.scalars(select(Officer).where(
                Officer.certificate_x5t_s256 == fingerprint).limit(2)))
            if len(found) != 1:
                return None, "no officer registered this certificate", ""
            officer = found[0]
            username, cert_der = officer.username, officer.certificate_der or b""
            roles, person = officer.role_set(), officer.person
            active, person_id = officer.active, officer.person_id
        account_key, _source = throttle.keys(username, source)
        if not self._throttle.take(account_key, username, self.config.max_failed_logins):
            return None, f"officer {username} is locked out from {source}", ""
        if not active:
            return None, f"officer {username} is disabled", account_key
        if person_id != ssn:
            return None, f"the certificate's holder is not officer {username}'s person", \
                account_key
        if self._issued_here_and_revoked(cert_der):
            return None, f"officer {username}'s certificate is revoked", account_key
        return Actor(username, roles, person=person), "", account_key

    def _issued_here_and_revoked(self, cert_der: bytes) -> bool:
        """Whether this RA's CA issued the certificate and says it is not good now. A staff
        CA's certificate is not this CA's to answer for: the provider checked its status with
        that CA's OCSP at the log-in."""
        if self.ca is None:
            return False
        cert = load_certificate(cert_der)
        with _reaching_the_ca():
            issuing = load_certificate(self.ca.chain()[0])
            if cert.issuer != issuing.subject:
                return False
            try:
                return self.ca.status(Serial(cert.serial_number)) != Status.GOOD
            except UnknownCertificate:
                return True  # named as this CA's, yet unknown to it: not a certificate to trust

    # -- API clients --------------------------------------------------------------------------

    def add_api_client(self, actor: Actor | None, name: str) -> str:
        """Register a reader tool or kiosk; returns its bearer token, shown once."""
        return self._add_client(actor, name, None)

    def add_signing_client(self, actor: Actor | None, name: str, certificate: bytes) -> None:
        """Register a station or service that signs its requests (``sscard.httpsig``) with the
        key of ``certificate`` (DER); it has no usable bearer token."""
        if actor is not None:
            self._need(actor, Role.ADMINISTRATOR)  # before the certificate is even looked at
        try:
            identity = httpsig.decode_certificate(certificate).identity.hex()
        except httpsig.SignatureError as exc:
            raise BadRequest(f"API client {name}: {exc}",
                             "bad_client_certificate", name=name) from None
        self._add_client(actor, name, identity)  # its token is dropped unseen

    def _add_client(self, actor: Actor | None, name: str, identity: str | None) -> str:
        if actor is not None:
            self._need(actor, Role.ADMINISTRATOR)
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(
                ".", "").isalnum():
            raise BadRequest(f"client name {name!r}: 1-64 letters, digits, '-', '_' or '.'",
                             "bad_client_name", name=name)
        token = "ra_" + secrets.token_urlsafe(32)
        details = {"certificate_sha256": identity} if identity else {}
        with self.audit.operation(actor.audit_name if actor else "setup", "ra.client.add", name,
                                  details=details):
            try:
                with self._tx() as s:
                    s.add(ApiClient(name=name, token_sha256=token_digest(token), active=True,
                                    certificate_sha256=identity, created_at=self.clock()))
            except IntegrityError:
                raise Conflict(f"an API client named {name!r} or with this certificate "
                               "already exists", "client_exists", name=name) from None
        return token

    def authenticate_signed_client(self, identity: bytes) -> Actor:
        """The API client bound to a certificate, once its request signature has verified."""
        with self._tx() as s:
            client = s.scalar(select(ApiClient).where(
                ApiClient.certificate_sha256 == identity.hex()))
            if client is None or not client.active:
                raise AuthenticationFailed("the request's certificate belongs to no active "
                                           "API client", "unknown_client_certificate")
            return Actor(client.name, frozenset({Role.OPERATOR}), client=True)

    def authenticate_client(self, token: str | None) -> Actor:
        if not token:
            raise AuthenticationFailed("no bearer token (Authorization: Bearer <token>)",
                                       "no_token")
        with self._tx() as s:
            client = s.scalar(select(ApiClient).where(
                ApiClient.token_sha256 == token_digest(token)))
            if client is None or not client.active:
                raise AuthenticationFailed("unknown or deactivated API token", "unknown_token")
            return Actor(client.name, frozenset({Role.OPERATOR}), client=True)

    def card_number_of_certificate(self, actor: Actor, issuer: str, serial: str) -> str | None:
        """The number of the active card whose signing certificate is the one ``issuer`` (its
        name: DER, in hex) issued with ``serial``, or None: the registry behind the identity
        provider's card-number claim (the card number is not in the certificate). A certificate
        is its issuer and serial (RFC 5280 4.1.2.2): the RA knows the serials its CA gave, so
        another CA's certificate carrying one of them is refused (``foreign_issuer``), never
        taken for that card's. Only for an active API client bound to a certificate in
        ``card_number_readers`` (nobody by default); every lookup is audited, refused, found or
        not."""
        with self.audit.operation(actor.audit_name, "ra.card.lookup", serial,
                                  refusals=(NotFound,)) as op:
            with self._tx() as s:
                client = s.scalar(select(ApiClient).where(ApiClient.name == actor.name)) \
                    if actor.client else None
                if client is None or not client.active \
                        or client.certificate_sha256 not in self.card_number_readers:
                    op.deny("not a card-number reader")
                    raise Forbidden("this caller may not look card numbers up",
                                    "card_number_not_allowed")
            hexs = self._serial_hex(serial)
            self._need_this_cas_name(issuer, hexs)
            with self._tx() as s:
                card = s.scalar(select(Card).where(Card.sign_serial == hexs))
                found = card.card_number if card is not None and \
                    card.status == CardStatus.ACTIVE else None
            op.set(found=found is not None)
        return found

    def _need_this_cas_name(self, issuer: str, serial: str) -> None:
        """``issuer`` (a DER name in hex) is the name of the CA issuing this RA's certificates,
        by RFC 5280's comparison of names (asn1crypto's ``Name.__eq__``), else refused."""
        if not issuer:
            raise BadRequest("the certificate's issuer is missing (issuer: its name, DER in "
                             "hex)", "bad_issuer")
        try:
            name = x509.Name.load(bytes.fromhex(issuer), strict=True)
            name.native  # noqa: B018 -- parses the whole name now, not in the comparison
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"the certificate's issuer is not a DER-encoded name ({exc})",
                             "bad_issuer") from None
        if self.ca is None:
            raise NotFound(f"the certificate {serial} was not issued by this RA's CA (the RA "
                           "has no CA)", "foreign_issuer")
        with _reaching_the_ca():
            ours = load_certificate(self.ca.chain()[0]).subject
        if name != ours:
            raise NotFound(f"the certificate {serial} was not issued by this RA's CA: its "
                           f"issuer is {format_name(name)}, the RA's CA is {format_name(ours)}",
                           "foreign_issuer")

    # -- batches ------------------------------------------------------------------------------

    def authorise_batch(self, actor: Actor, name: str, limit: int, *, station: str,
                        cardholders: list[str] | None = None,
                        valid_for: dt.timedelta = dt.timedelta(hours=12)) -> None:
        """An officer pre-authorises a named batch of up to ``limit`` enrollments, submitted
        by the API client ``station`` only, for the listed cardholders (social security
        numbers; each once) or any, until ``valid_for`` from now."""
        self._need(actor, Role.OFFICER)
        if not name.strip() or len(name) > 64:
            raise BadRequest("a batch needs a name of 1-64 characters", "batch_name")
        if limit < 1:
            raise BadRequest("a batch covers at least one enrollment", "batch_limit")
        if valid_for <= dt.timedelta(0) or valid_for > dt.timedelta(days=31):
            raise BadRequest("a batch is valid for more than nothing and at most 31 days",
                             "batch_validity")
        ssns = sorted({c.strip() for c in cardholders or [] if c.strip()})
        bad = [c for c in ssns if len(c) != 18 or not c[:17].isdigit()]
        if bad:
            raise BadRequest(f"not social security numbers: {', '.join(bad[:5])}",
                             "batch_bad_ssns", ssns=", ".join(bad[:5]))
        if cardholders is not None and not ssns:
            raise BadRequest("the batch's cardholder list is empty", "batch_empty")
        if ssns and limit > len(ssns):
            raise BadRequest(f"the batch lists {len(ssns)} cardholders but allows {limit} "
                             "enrollments", "batch_over_list", listed=len(ssns), limit=limit)
        expires = self.clock() + valid_for
        with self.audit.operation(actor.audit_name, "ra.batch.authorise", name,
                                  details={"limit": limit, "station": station,
                                           "cardholders": len(ssns),
                                           "expires": expires.isoformat()}):
            with self._tx() as s:
                client = s.scalar(select(ApiClient).where(ApiClient.name == station))
                if client is None or not client.active:
                    raise BadRequest(f"no active API client (station) named {station!r}",
                                     "no_station", station=station)
            try:
                with self._tx() as s:
                    s.add(BatchAuthorisation(name=name, authorised_by=actor.name, limit=limit,
                                             used=0, active=True, created_at=self.clock(),
                                             station=station,
                                             cardholders=json.dumps(ssns) if ssns else None,
                                             expires_at=expires))
            except IntegrityError:
                raise Conflict(f"a batch named {name!r} already exists", "batch_exists",
                               name=name) from None

    def _batch_approval(self, s: Session, batch: str, actor: Actor, person: Cardholder,
                        req: Request) -> None:
        """Approve ``req`` on submission under a pre-authorised batch, or refuse (Forbidden).
        The batch's count is taken by a conditional UPDATE: parallel submissions never
        overrun it."""
        row = s.scalar(select(BatchAuthorisation).where(BatchAuthorisation.name == batch))
        facts = None if row is None else BatchFacts(
            row.name, row.authorised_by, row.limit, row.used, row.active, row.station,
            None if row.cardholders is None else tuple(json.loads(row.cardholders)),
            None if row.expires_at is None else row.expires_at)
        verdict = batch_covers(facts, RequestKind.ENROLLMENT, actor.name, person.ssn, self.clock())
        if verdict.allowed and facts is not None and facts.cardholders is not None and \
                s.scalar(select(func.count()).select_from(Request).where(
                    Request.batch_name == batch, Request.cardholder_id == person.id,
                    Request.id != req.id)):
            verdict = Decision(False, f"cardholder {person.ssn} already enrolled in it",
                               code="batch_cardholder_enrolled", params={"ssn": person.ssn})
        if not verdict.allowed:
            raise Forbidden(f"batch {batch!r}: {verdict.reason}", verdict.code,
                            **verdict.params)
        assert row is not None
        taken = s.execute(update(BatchAuthorisation).where(
            BatchAuthorisation.id == row.id,
            BatchAuthorisation.used < BatchAuthorisation.limit).values(
                used=BatchAuthorisation.used + 1))
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise Forbidden(f"batch {batch!r}: used up ({row.limit} enrollments)",
                            "batch_used_up", name=batch, limit=row.limit)
        req.state = RequestState.APPROVED
        s.add(Approval(request_id=req.id, officer=row.authorised_by, person=None,
                       decision="approve",
                       reason=f"pre-authorised batch {batch} for station {row.station}",
                       at=self.clock()))

    # -- enrollment ---------------------------------------------------------------------------

    def submit_enrollment(self, actor: Actor, holder: HolderData, card: CardInput,
                          csr_der: bytes, batch: str | None = None) -> dict[str, Any]:
        """Register the cardholder and card and file the enrollment for the CSR (signed by the
        card's key; its subject must be the one built from the cardholder record). The same
        client re-submitting the same card and key gets its request back, so a reader tool
        that lost its answer can ask again; anyone else gets a conflict and no data."""
        self._need(actor, Role.OPERATOR, Role.OFFICER, clients=True)
        try:
            holder.validate()
        except (CardDataError, CodecError) as exc:
            raise BadRequest(f"cardholder data: {exc}",
                             "bad_cardholder_data", detail=str(exc)) from None
        card_id = card.card_id.upper()
        if len(card_id) != 32 or any(c not in "0123456789ABCDEF" for c in card_id):
            raise BadRequest("card identification code must be 32 hex digits", "bad_card_id")
        if not card.card_number or len(card.card_number) > 9:
            raise BadRequest("card number must be 1-9 characters", "bad_card_number")
        csr = self._check_csr(csr_der, holder.ssn, holder.name)
        csr_der = csr.dump()
        with self.audit.operation(actor.audit_name, "ra.enrollment.submit", card_id,
                                  details={"ssn": holder.ssn, "batch": batch or ""}) as op:
            with self._tx() as s:
                existing = self._existing_enrollment(s, actor, card_id, csr_der)
                if existing is not None:
                    op.set(request_id=existing.public_id, repeated=True)
                    if existing.state != RequestState.APPROVED:
                        return self._info(s, existing)
                    public_id = existing.public_id
            if existing is not None:
                # approved but perhaps never finished (the RA stopped mid-issuance): finish
                # it now, unless another call is carrying it out (the execution claim)
                self._execute(actor, public_id)
                return self.request(actor, public_id)
            with self._tx() as s:
                person = self._cardholder(s, holder)
                taken = s.scalar(select(Card).where(Card.card_number == card.card_number))
                if taken is not None:
                    raise Conflict(self._card_number_taken(s, taken),
                                   "card_number_taken", card_number=card.card_number)
                card_row = Card(cardholder_id=person.id, card_id=card_id,
                                card_number=card.card_number, generation=card.generation,
                                status=CardStatus.PERSONALISING, created_at=self.clock())
                s.add(card_row)
                s.flush()
                req = self._new_request(s, RequestKind.ENROLLMENT, actor, person.id,
                                        card_row.id, csr_der=csr_der, batch=batch)
                if batch:
                    self._batch_approval(s, batch, actor, person, req)
                public_id = req.public_id
                op.set(request_id=public_id, state=req.state)
        if batch:
            self._execute(actor, public_id)
        return self.request(actor, public_id)

    @staticmethod
    def holder_subject(ssn: str, name: str) -> Any:
        """The certificate subject for a cardholder, built from the record alone."""
        escaped = name.replace("\\", "\\\\").replace(",", "\\,")
        try:
            return parse_name(f"CN={escaped},serialNumber={ssn},C=CN")
        except BuilderError as exc:
            raise BadRequest(f"cardholder record: {exc}",
                             "bad_cardholder_data", detail=str(exc)) from None

    def _check_csr(self, csr_der: bytes, ssn: str, name: str) -> Any:
        try:
            csr = load_csr(csr_der)
            key = verify_csr(csr)
        except (X509Error, CryptoError, ValueError) as exc:
            raise BadRequest(f"certificate request rejected: {exc}",
                             "bad_csr", detail=str(exc)) from None
        if key.algorithm is not KeyAlgorithm.SM2:
            raise BadRequest(f"a card's signing key is SM2, not {key.algorithm.value}",
                             "card_key_not_sm2")
        subject = csr["certification_request_info"]["subject"]
        expected = self.holder_subject(ssn, name)
        if subject.dump() != expected.dump():
            why = _subject_difference(subject, ssn, name)
            raise BadRequest(f"the request's subject {format_name(subject)!r} is not the one "
                             f"the RA issues for the cardholder record, "
                             f"{format_name(expected)!r}: {why}", "csr_subject")
        return csr

    @staticmethod
    def _card_number_taken(s: Session, card: Card) -> str:
        """Why a card number cannot be used again: the card that holds it and its latest
        request, so that the counter knows what to do (resume, roll back, or a new number)."""
        last = s.scalar(select(Request).where(Request.card_ref == card.id)
                        .order_by(Request.id.desc()))
        why = f"card {card.card_id}, {card.status}"
        if last is not None:
            why += f"; its request {last.public_id} ({last.kind}) is {last.state}"
            if last.state in (RequestState.REJECTED, RequestState.FAILED):
                detail = last.error or s.scalar(
                    select(Approval.reason).where(Approval.request_id == last.id,
                                                  Approval.decision == "reject")
                    .order_by(Approval.id.desc()))
                why += (f"{': ' + detail if detail else ''}; a card number is never "
                        "reused: give the new card its own number")
        return f"card number {card.card_number} is already registered ({why})"

    @staticmethod
    def _existing_enrollment(s: Session, actor: Actor, card_id: str,
                             csr_der: bytes) -> Request | None:
        card = s.scalar(select(Card).where(Card.card_id == card_id))
        if card is None:
            return None
        req = s.scalar(select(Request).where(
            Request.card_ref == card.id, Request.kind == RequestKind.ENROLLMENT)
            .order_by(Request.id.desc()))
        if req is None:
            return None
        if req.requested_by != actor.name:
            # never another client's request (it carries the wrapped key blob)
            raise Conflict(f"card {card_id} is already registered by another station",
                           "card_other_station", card_id=card_id)
        def spki(der: bytes | None) -> bytes:
            return b"" if der is None else \
                load_csr(der)["certification_request_info"]["subject_pk_info"].dump()

        # the same card key (a CSR signed again differs: SM2 signatures are randomised)
        if spki(req.csr_der) != spki(csr_der) or card.status != CardStatus.PERSONALISING \
                or req.state in (RequestState.FAILED, RequestState.REJECTED):
            raise Conflict(f"card {card_id} is already registered ({card.status}, request "
                           f"{req.public_id}); a spoiled card is not issued again",
                           "card_registered", card_id=card_id)
        return req

    def _cardholder(self, s: Session, holder: HolderData) -> Cardholder:
        person = s.scalar(select(Cardholder).where(Cardholder.ssn == holder.ssn))
        fields = {"name": holder.name, "sex": holder.sex, "ethnicity": holder.ethnicity,
                  "birthplace": holder.birthplace, "birth_date": holder.birth_date}
        if person is None:
            person = Cardholder(ssn=holder.ssn, created_at=self.clock(), **fields)
            s.add(person)
            s.flush()
            return person
        differ = [k for k, v in fields.items() if getattr(person, k) != v]
        if differ:
            raise Conflict(f"cardholder {holder.ssn} is registered with different "
                           f"{', '.join(differ)}", "cardholder_differs", ssn=holder.ssn)
        return person

    def _new_request(self, s: Session, kind: RequestKind, actor: Actor, cardholder_id: int | None,
                     card_ref: int | None, *, csr_der: bytes | None = None,
                     batch: str | None = None, serial: str | None = None, reason: str = "",
                     details: dict[str, Any] | None = None) -> Request:
        now = self.clock()
        req = Request(public_id="rq-" + uuid.uuid4().hex[:20], kind=kind,
                      state=RequestState.SUBMITTED, cardholder_id=cardholder_id,
                      card_ref=card_ref, requested_by=actor.name, reason=reason,
                      csr_der=csr_der, batch_name=batch, certificate_serial=serial,
                      details=json.dumps(details or {}), created_at=now, updated_at=now)
        s.add(req)
        s.flush()
        return req

    # -- revocation, renewal, key recovery ----------------------------------------------------

    def submit_revocation(self, actor: Actor, *, card_number: str | None = None,
                          serial: str | None = None, reason: str = "keyCompromise",
                          comment: str = "") -> dict[str, Any]:
        """Ask to revoke a card's certificates (lost card) or one certificate by serial."""
        self._need(actor, Role.OPERATOR, Role.OFFICER)
        try:
            why = RevocationReason.parse(reason)
        except ValueError as exc:
            raise BadRequest(str(exc), "bad_reason", reason=reason) from None
        if (card_number is None) == (serial is None):
            raise BadRequest("name either the card number or a certificate serial",
                             "card_or_serial")
        with self._tx() as s:
            card = None
            if card_number is not None:
                card = s.scalar(select(Card).where(Card.card_number == card_number))
                if card is None:
                    raise NotFound(f"no card numbered {card_number}", "no_card",
                                   card_number=card_number)
                serials = [x for x in (card.sign_serial, card.enc_serial) if x]
                if not serials:
                    raise Conflict(f"card {card_number} has no certificates to revoke",
                                   "card_without_certificates", card_number=card_number)
            else:
                assert serial is not None
                serials = [self._serial_hex(serial)]
                card = s.scalar(select(Card).where(or_(Card.sign_serial == serials[0],
                                                       Card.enc_serial == serials[0])))
            if self.ca is not None:
                for hexs in serials:
                    with _reaching_the_ca():
                        status = self.ca.status(Serial.parse(hexs))
                    if status == Status.UNKNOWN:
                        raise NotFound(f"certificate {hexs} was never issued by this CA",
                                       "unknown_certificate", serial=hexs)
                    if status == Status.REVOKED:
                        raise Conflict(f"certificate {hexs} is already revoked", "already_revoked",
                                       serial=hexs)
        obj = card_number or serials[0]
        with self.audit.operation(actor.audit_name, "ra.revocation.submit", obj,
                                  details={"reason": why.name}) as op, self._tx() as s:
            req = self._new_request(
                s, RequestKind.REVOCATION, actor, card.cardholder_id if card else None,
                card.id if card else None, serial=serials[0], reason=comment,
                details={"serials": serials, "reason": why.name})
            op.set(request_id=req.public_id)
            return self._info(s, req)

    @staticmethod
    def _serial_hex(serial: str) -> str:
        try:
            return Serial.parse(serial).hex
        except (ValueError, TypeError) as exc:
            raise BadRequest(str(exc), "bad_serial", serial=serial) from None

    def submit_renewal(self, actor: Actor, card_number: str, csr_der: bytes,
                       comment: str = "") -> dict[str, Any]:
        """A new signing certificate for an issued card (its signing key renewed on the card);
        on approval the old signing certificate is revoked as superseded."""
        self._need(actor, Role.OPERATOR, Role.OFFICER)
        with self._tx() as s:
            card = s.scalar(select(Card).where(Card.card_number == card_number))
            if card is None:
                raise NotFound(f"no card numbered {card_number}", "no_card",
                                   card_number=card_number)
            if card.status != CardStatus.ACTIVE:
                raise Conflict(f"card {card_number} is {card.status}; only an issued card is "
                               "renewed",
                               "card_not_issued", card_number=card_number, card_state=card.status)
            person = s.get(Cardholder, card.cardholder_id)
            assert person is not None
            ssn, card_ref, holder_id, old = person.ssn, card.id, person.id, card.sign_serial
            name = person.name
        csr = self._check_csr(csr_der, ssn, name)
        with self.audit.operation(actor.audit_name, "ra.renewal.submit", card_number) as op, \
                self._tx() as s:
            req = self._new_request(s, RequestKind.RENEWAL, actor, holder_id, card_ref,
                                    csr_der=csr.dump(), reason=comment,
                                    details={"old_sign_serial": old})
            op.set(request_id=req.public_id)
            return self._info(s, req)

    def _renew(self, actor: Actor, request_id: str) -> None:
        if self.ca is None:
            raise UpstreamFailed("the RA is not connected to a CA", "no_ca")
        with self._tx() as s:
            req = self._request(s, request_id)
            details, csr_der = self._details(req), req.csr_der
        assert csr_der is not None
        with self.audit.operation(actor.audit_name, "ra.renewal.issue", request_id) as op:
            try:
                if "sign_serial" not in details:
                    signed = self.ca.issue_from_csr(csr_der, self.config.sign_profile,
                                                    request_id=f"{request_id}.sign")
                    self._save(request_id, sign_serial=self._serial_hex(f"{signed.serial:x}"),
                               sign_cert=_b64(signed.der))
                old = details.get("old_sign_serial")
                if old:
                    try:
                        self.ca.revoke(Serial.parse(old), RevocationReason.superseded)
                    except AlreadyRevoked:
                        pass
            except CaUnavailable as exc:
                raise _waiting(exc) from None
            except CAError as exc:
                raise UpstreamFailed(f"renewal failed: {exc}", "renewal_failed",
                                     detail=str(exc)) from None
            with self._tx() as s:
                req = self._request(s, request_id)
                req.state, req.updated_at = RequestState.DONE, self.clock()
                op.set(sign_serial=req.certificate_serial, superseded=old or "")

    def submit_key_recovery(self, actor: Actor, enc_serial: str, new_card_spki: bytes,
                            comment: str) -> dict[str, Any]:
        """Recover the escrowed encryption key of certificate ``enc_serial`` onto a new card
        (named by its signing public key); needs two officers' approval."""
        self._need(actor, Role.OFFICER, Role.OPERATOR)
        if not comment.strip():
            raise BadRequest("a key recovery needs a reason", "recovery_reason")
        from sscard.crypto.asymmetric import PublicKey

        try:
            key = PublicKey.from_spki(new_card_spki)
        except (CryptoError, ValueError) as exc:
            raise BadRequest(f"new card signing key: {exc}", "bad_card_key") from None
        if key.algorithm is not KeyAlgorithm.SM2:
            raise BadRequest("the new card's signing key must be SM2", "card_key_not_sm2")
        hexs = self._serial_hex(enc_serial)
        with self._tx() as s:
            card = s.scalar(select(Card).where(Card.enc_serial == hexs))
            if card is None:
                raise NotFound(f"no card holds encryption certificate {hexs}",
                               "no_encryption_certificate", serial=hexs)
        with self.audit.operation(actor.audit_name, "ra.recovery.submit", hexs) as op, \
                self._tx() as s:
            req = self._new_request(s, RequestKind.KEY_RECOVERY, actor, card.cardholder_id,
                                    card.id, serial=hexs, reason=comment,
                                    details={"recipient_spki": _b64(key.spki_der())})
            op.set(request_id=req.public_id)
            return self._info(s, req)

    # -- decisions ----------------------------------------------------------------------------

    def approve(self, actor: Actor, request_id: str, reason: str = "") -> dict[str, Any]:
        return self._decide(actor, request_id, True, reason)

    def reject(self, actor: Actor, request_id: str, reason: str) -> dict[str, Any]:
        if not reason.strip():
            raise BadRequest("a rejection needs a reason", "rejection_reason")
        return self._decide(actor, request_id, False, reason)

    def _decide(self, actor: Actor, request_id: str, approve: bool,
                reason: str) -> dict[str, Any]:
        """Record one officer's decision. The request row is updated under its version
        (optimistic lock): of two decisions at once, one commits and the other is evaluated
        again against the new state, so every decision counts exactly once."""
        self._need(actor, Role.OFFICER)
        action = "ra.request.approve" if approve else "ra.request.reject"
        with self.audit.operation(actor.audit_name, action, request_id) as op:
            for _attempt in range(DECISION_RETRIES):
                try:
                    execute = self._decide_once(actor, request_id, approve, reason, op)
                    break
                except (ConcurrentChange, IntegrityError):
                    continue  # another decision committed first: look again
            else:
                op.deny("the request kept changing")
                raise Conflict(f"request {request_id} kept changing while it was decided; "
                               "try again", "decision_race", request_id=request_id)
        if execute:
            self._execute(actor, request_id)
        return self.request(actor, request_id)

    def _decide_once(self, actor: Actor, request_id: str, approve: bool, reason: str,
                     op: Any) -> bool:
        with self._tx() as s:
            req = self._request(s, request_id)
            me = s.scalar(select(Officer).where(Officer.username == actor.name))
            if actor.client or me is None or not me.active:
                op.deny("no enabled officer account")
                raise Forbidden(f"{actor.name} has no enabled officer account",
                                "no_officer_account", name=actor.name)
            facts = self._facts(s, req)
            verdict = decide(self.config.policy, facts, actor.name, me.role_set(), approve,
                             me.person)
            if not verdict.allowed:
                op.deny(verdict.reason)
                raise Forbidden(verdict.reason, verdict.code, **verdict.params)
            assert verdict.new_state is not None
            req.state = verdict.new_state
            req.updated_at = self.clock()
            s.add(Approval(request_id=req.id, officer=actor.name, person=me.person,
                           decision="approve" if approve else "reject", reason=reason,
                           at=self.clock()))
            s.flush()  # the versioned UPDATE: raises StaleDataError when we lost the race
            op.set(state=req.state, approvals=verdict.approvals_after,
                   needed=self.config.policy.required(facts.kind))
            if req.kind == RequestKind.KEY_RECOVERY and approve:
                self._kmc_recovery_approval(s, req, actor.name)
            return req.state == RequestState.APPROVED

    @staticmethod
    def _facts(s: Session, req: Request) -> RequestFacts:
        requester = s.scalar(select(Officer).where(Officer.username == req.requested_by))
        decided = list(s.scalars(select(Approval).where(Approval.request_id == req.id)))
        return RequestFacts(
            RequestKind(req.kind), RequestState(req.state), req.requested_by,
            [a.person or a.officer for a in decided if a.decision == "approve"],
            [a.person or a.officer for a in decided if a.decision == "reject"],
            requester.person if requester is not None else None)

    def may_decide(self, actor: Actor, request_id: str) -> Decision:
        """Would the policy let ``actor`` decide this request now? The UI offers approve and
        reject only when it would (the decision itself is checked again when it is made)."""
        self._need(actor, Role.OPERATOR, Role.OFFICER, Role.AUDITOR)
        with self._tx() as s:
            req = self._request(s, request_id)
            me = s.scalar(select(Officer).where(Officer.username == actor.name))
            if actor.client or me is None or not me.active:
                return Decision(False, f"{actor.name} has no enabled officer account",
                                code="no_officer_account", params={"name": actor.name})
            return decide(self.config.policy, self._facts(s, req), actor.name, me.role_set(),
                          True, me.person)

    def _claim(self, request_id: str) -> bool:
        """Take the right to carry out an approved request: exactly one caller gets it (the
        versioned UPDATE), and it lapses after ``resume_after`` without progress, so a request
        whose executor died is finished by the next call."""
        now = self.clock()
        try:
            with self._tx() as s:
                req = self._request(s, request_id)
                if req.state != RequestState.APPROVED:
                    return False
                if req.claimed_at is not None and \
                        now - req.claimed_at < self.config.resume_after:
                    return False
                req.claimed_at = now
        except ConcurrentChange:
            return False
        return True

    def _execute(self, actor: Actor, request_id: str) -> None:
        """Carry out an approved request, once: a caller that does not get the claim leaves
        it to the one that did. A failure marks it failed, undoes what it issued, and is
        raised as ``UpstreamFailed``."""
        if self._claim(request_id):
            self._carry_out(actor, request_id)

    def _carry_out(self, actor: Actor, request_id: str) -> None:
        """``_execute`` once the claim is held."""
        with self._tx() as s:
            kind = RequestKind(self._request(s, request_id).kind)
        try:
            if kind is RequestKind.ENROLLMENT:
                self._issue(actor, request_id)
            elif kind is RequestKind.RENEWAL:
                self._renew(actor, request_id)
            elif kind is RequestKind.REVOCATION:
                self._revoke(actor, request_id)
            else:
                self._recover(actor, request_id)
        except UpstreamUnavailable as exc:
            self._wait(request_id, str(exc))
            raise
        except UpstreamFailed as exc:
            self._fail(actor, request_id, str(exc))
            raise
        with self._tx() as s:
            req = self._request(s, request_id)
            if req.state == RequestState.DONE and req.error is not None:
                req.error = None  # it waited (for the CA or the KMC); it no longer does

    def resume_waiting(self, limit: int = 100) -> list[dict[str, Any]]:
        """Carry on approved requests whose execution stopped: the CA or the KMC was out of
        reach (they wait, unclaimed), or the process carrying one out died (its claim lapsed
        after ``resume_after``). Each is claimed as on resubmission, so one another worker is
        carrying out now is left alone; steps already done are skipped, and the CA answers a
        repeated issuance with the certificate of the same request id, so nothing is issued
        twice. The signing certificates of the enrollments among them are asked for first, in
        CA batches (``_sign_enrollments``). Returns each one's state afterwards, with the error
        when it still waits."""
        stale = self.clock() - self.config.resume_after
        with self._tx() as s:
            ids = list(s.scalars(
                select(Request.public_id)
                .where(Request.state == RequestState.APPROVED,
                       or_(Request.claimed_at.is_(None), Request.claimed_at < stale))
                .order_by(Request.id).limit(limit)))
        claimed = [request_id for request_id in ids if self._claim(request_id)]
        self._sign_enrollments(claimed)
        out = []
        for request_id in ids:
            try:
                if request_id in claimed:
                    self._carry_out(RESUMER, request_id)
            except (UpstreamUnavailable, UpstreamFailed):
                pass  # recorded on the request: waiting again, or failed (and rolled back)
            with self._tx() as s:
                req = self._request(s, request_id)
                out.append({"request_id": request_id, "state": req.state, "error": req.error})
        return out

    def _sign_enrollments(self, request_ids: Sequence[str]) -> None:
        """The signing certificates of the (claimed) enrollments that lack one, from the CA in
        batches (one signed request per ``MAX_BATCH_ITEMS``, possession attested: the RA
        verified each CSR), instead of one request each. Every entry keeps its request's own
        id at the CA (``<id>.sign``, as ``_issue`` asks), so a batch sent again after a lost
        answer gives the same certificates; each is saved on its request as it comes back, and
        the request's own execution then goes on from there. An entry the CA refuses, or a
        batch that does not reach it, is left to that execution, which asks the CA again and
        fails the request (audited, rolled back) or leaves it waiting, as for one request."""
        if self.ca is None:
            return
        todo: list[tuple[str, bytes]] = []
        for request_id in request_ids:
            with self._tx() as s:
                req = self._request(s, request_id)
                if (req.kind != RequestKind.ENROLLMENT or req.csr_der is None
                        or "sign_serial" in self._details(req)):
                    continue
                person = s.get(Cardholder, req.cardholder_id)
                assert person is not None
                csr_der, ssn, name = req.csr_der, person.ssn, person.name
            try:
                self._check_csr(csr_der, ssn, name)  # as _issue checks it again
            except BadRequest:
                continue  # _issue refuses it with the reason
            todo.append((request_id, csr_der))
        for start in range(0, len(todo), MAX_BATCH_ITEMS):
            chunk = todo[start:start + MAX_BATCH_ITEMS]
            # an issuance of the enrollments' signing certificates: one record pair names
            # them all (each request's own ra.enrollment.issue follows)
            with self.audit.operation(RESUMER.audit_name, "ra.enrollment.issue",
                                      f"batch:{len(chunk)}",
                                      details={"requests": [rid for rid, _ in chunk],
                                               "certificates": "sign"}) as op:
                try:
                    results = self.ca.issue_batch(
                        [(csr_der, f"{rid}.sign") for rid, csr_der in chunk],
                        self.config.sign_profile, attest=True)
                except CAError as exc:  # unreachable, or not permitted: each request asks alone
                    op.fail(str(exc)[:300])
                    return
                refused = []
                for (rid, _), result in zip(chunk, results, strict=True):
                    if isinstance(result, IssuedCertificate):
                        self._save(rid, sign_serial=self._serial_hex(f"{result.serial:x}"),
                                   sign_cert=_b64(result.der))
                    else:
                        refused.append(f"{rid}: {str(result)[:200]}")
                op.set(issued=len(chunk) - len(refused), refused=refused)

    def _wait(self, request_id: str, error: str) -> None:
        """The CA or KMC is out of reach: the request stays approved, says why it waits, and
        gives up its execution claim so that the next submission carries it on at once (the
        steps already done are recorded and skipped)."""
        with self._tx() as s:
            req = self._request(s, request_id)
            req.error, req.updated_at, req.claimed_at = error, self.clock(), None

    def _fail(self, actor: Actor, request_id: str, error: str) -> None:
        with self._tx() as s:
            req = self._request(s, request_id)
            req.state, req.error, req.updated_at = RequestState.FAILED, error, self.clock()
        if RequestKind(req.kind) is RequestKind.ENROLLMENT:
            self.rollback_enrollment(actor, request_id, f"issuance failed: {error}",
                                     _system=True)

    def _details(self, req: Request) -> dict[str, Any]:
        return dict(json.loads(req.details or "{}"))

    def _save(self, request_id: str, **changes: Any) -> None:
        """Commit one step's result before the next step runs, so a crash in between leaves
        a record of everything issued (and rollback can revoke it)."""
        with self._tx() as s:
            req = self._request(s, request_id)
            details = self._details(req)
            details.update(changes)
            req.details = json.dumps(details)
            req.updated_at = req.claimed_at = self.clock()  # progress keeps the execution claim
            if "sign_serial" in changes:
                req.certificate_serial = changes["sign_serial"]
            card = s.get(Card, req.card_ref) if req.card_ref else None
            if card is not None:
                for key in ("sign_serial", "enc_serial", "escrow_key_id"):
                    if key in changes:
                        setattr(card, key, changes[key])

    def _issue(self, actor: Actor, request_id: str) -> None:
        """Signing certificate from the card's CSR; encryption key pair from the KMC (escrowed,
        wrapped for the card's signing key); encryption certificate for it. Each step commits
        its result first and is skipped when already done."""
        if self.ca is None or self.kmc is None:
            raise UpstreamFailed("the RA is not connected to a CA and a KMC", "no_ca_kmc")
        with self._tx() as s:
            req = self._request(s, request_id)
            details, csr_der = self._details(req), req.csr_der
            person = s.get(Cardholder, req.cardholder_id)
            assert person is not None
            ssn, name = person.ssn, person.name
        assert csr_der is not None
        # the CSR's subject was checked against the record on submission; checked again here,
        # and the encryption certificate's subject is built from the record, not the CSR
        csr = self._check_csr(csr_der, ssn, name)
        subject = self.holder_subject(ssn, name)
        spki = csr["certification_request_info"]["subject_pk_info"].dump()
        with self.audit.operation(actor.audit_name, "ra.enrollment.issue", request_id) as op:
            try:
                if "sign_serial" not in details:
                    # the request's own id at the CA: a lost answer asked again is the same
                    # certificate, never a second one
                    signed = self.ca.issue_from_csr(csr_der, self.config.sign_profile,
                                                    request_id=f"{request_id}.sign")
                    self._save(request_id, sign_serial=self._serial_hex(f"{signed.serial:x}"),
                               sign_cert=_b64(signed.der))
                if "escrow_key_id" not in details:
                    escrow = self.kmc.escrow(ssn, spki,  # the subject's serialNumber
                                             request_id=f"{request_id}.escrow")
                    if escrow.enveloped_key_blob is None:
                        raise UpstreamFailed("the KMC returned no enveloped key for the card",
                                             "kmc_no_key")
                    details.update(escrow_key_id=escrow.key_id)
                    self._save(request_id, escrow_key_id=escrow.key_id,
                               enc_public_key=_b64(escrow.public_key_spki),
                               enveloped_key_blob=_b64(escrow.enveloped_key_blob))
                    details.update(enc_public_key=_b64(escrow.public_key_spki))
                if "enc_serial" not in details:
                    enc = self.ca.issue_for_public_key(base64.b64decode(details["enc_public_key"]),
                                                       format_name(subject),
                                                       self.config.enc_profile,
                                                       request_id=f"{request_id}.enc")
                    self._save(request_id, enc_serial=self._serial_hex(f"{enc.serial:x}"),
                               enc_cert=_b64(enc.der))
                    self.kmc.attach_certificate(details["escrow_key_id"], enc.der)
            except (CaUnavailable, KmcUnavailable) as exc:
                raise _waiting(exc) from None
            except (CAError, CryptoError, X509Error) as exc:
                raise UpstreamFailed(f"issuance failed: {exc}", "issuance_failed",
                                     detail=str(exc)) from None
            except KmcError as exc:
                raise UpstreamFailed(f"key escrow failed: {exc}", "escrow_failed",
                                     detail=str(exc)) from None
            with self._tx() as s:
                req = self._request(s, request_id)
                req.state, req.updated_at = RequestState.DONE, self.clock()
                op.set(sign_serial=req.certificate_serial)

    def _revoke(self, actor: Actor, request_id: str) -> None:
        with self._tx() as s:
            req = self._request(s, request_id)
            details = self._details(req)
        if self.ca is None:
            raise UpstreamFailed("the RA is not connected to a CA", "no_ca")
        with self.audit.operation(actor.audit_name, "ra.revocation.execute", request_id,
                                  details={"serials": details["serials"]}):
            for hexs in details["serials"]:
                try:
                    self.ca.revoke(Serial.parse(hexs), RevocationReason.parse(details["reason"]))
                except AlreadyRevoked:
                    pass
                except CaUnavailable as exc:
                    raise _waiting(exc) from None
                except CAError as exc:
                    raise UpstreamFailed(f"revocation of {hexs} failed: {exc}",
                                         "revocation_failed", serial=hexs,
                                         detail=str(exc)) from None
            with self._tx() as s:
                req = self._request(s, request_id)
                req.state, req.updated_at = RequestState.DONE, self.clock()
                card = s.get(Card, req.card_ref) if req.card_ref else None
                if card is not None:
                    card.status = CardStatus.REVOKED

    def _kmc_recovery_approval(self, s: Session, req: Request, officer: str) -> None:
        """Each RA approval of a key recovery is also that officer's approval at the KMC, so
        the KMC's own dual control sees the same two people."""
        if self.kmc is None:
            raise UpstreamFailed("the RA is not connected to a KMC", "no_kmc")
        details = self._details(req)
        assert req.certificate_serial is not None
        try:
            if "kmc_request" not in details:
                details["kmc_request"] = self.kmc.request_recovery(
                    Serial.parse(req.certificate_serial),
                    base64.b64decode(details["recipient_spki"]), req.reason)
                req.details = json.dumps(details)
            self.kmc.approve_recovery(details["kmc_request"], officer,
                                      f"RA request {req.public_id}")
        except KmcError as exc:
            raise UpstreamFailed(f"KMC refused: {exc}", "kmc_refused", detail=str(exc)) from None

    def _recover(self, actor: Actor, request_id: str) -> None:
        assert self.kmc is not None
        with self._tx() as s:
            details = self._details(self._request(s, request_id))
        with self.audit.operation(actor.audit_name, "ra.recovery.execute", request_id):
            try:
                result = self.kmc.complete_recovery(details["kmc_request"])
            except KmcError as exc:
                raise UpstreamFailed(f"KMC recovery failed: {exc}", "recovery_failed",
                                     detail=str(exc)) from None
            if result.enveloped_key_blob is None:
                raise UpstreamFailed("the KMC returned no enveloped key for the card", "kmc_no_key")
            self._save(request_id, enveloped_key_blob=_b64(result.enveloped_key_blob))
            with self._tx() as s:
                req = self._request(s, request_id)
                req.state, req.updated_at = RequestState.DONE, self.clock()

    # -- personalisation outcome --------------------------------------------------------------

    def confirm_personalised(self, actor: Actor, request_id: str) -> dict[str, Any]:
        """The reader tool read everything back from the card: the card is issued."""
        self._need(actor, Role.OPERATOR, Role.OFFICER, clients=True)
        with self.audit.operation(actor.audit_name, "ra.card.activate", request_id), \
                self._tx() as s:
            req = self._request(s, request_id)
            self._own(actor, req)
            card = s.get(Card, req.card_ref) if req.card_ref else None
            if req.state != RequestState.DONE or card is None:
                raise Conflict(f"request {request_id} is {req.state}; only an issued "
                               "enrollment activates its card",
                               "not_issued", request_id=request_id, state=req.state)
            if card.status not in (CardStatus.PERSONALISING, CardStatus.ACTIVE):
                raise Conflict(f"card {card.card_number} is {card.status}",
                               "card_state", card_number=card.card_number, card_state=card.status)
            card.status = CardStatus.ACTIVE
            return self._info(s, req)

    def rollback_enrollment(self, actor: Actor, request_id: str, reason: str,
                            _system: bool = False) -> dict[str, Any]:
        """Undo an enrollment whose card was not finished: revoke whatever was issued
        (cessationOfOperation), mark the card spoiled and the request failed. Idempotent."""
        if not _system:
            self._need(actor, Role.OPERATOR, Role.OFFICER, clients=True)
        with self._tx() as s:
            req = self._request(s, request_id)
            if not _system:
                self._own(actor, req)
            card = s.get(Card, req.card_ref) if req.card_ref else None
            if req.kind != RequestKind.ENROLLMENT or card is None:
                raise BadRequest(f"{request_id} is not an enrollment",
                                 "not_an_enrollment", request_id=request_id)
            if card.status == CardStatus.ACTIVE:
                raise Conflict(f"card {card.card_number} is issued; revoke it instead",
                               "card_issued", card_number=card.card_number)
            serials = [x for x in (card.sign_serial, card.enc_serial) if x]
        with self.audit.operation(actor.audit_name, "ra.enrollment.rollback", request_id,
                                  details={"serials": serials, "reason": reason[:200]}):
            for hexs in serials:
                try:
                    assert self.ca is not None
                    self.ca.revoke(Serial.parse(hexs), RevocationReason.cessationOfOperation)
                except (AlreadyRevoked, UnknownCertificate):
                    pass
            with self._tx() as s:
                req = self._request(s, request_id)
                card = s.get(Card, req.card_ref)
                assert card is not None
                card.status = CardStatus.SPOILED
                if req.state != RequestState.FAILED:
                    req.state, req.error = RequestState.FAILED, reason
                req.updated_at = self.clock()
                return self._info(s, req)

    # -- reading ------------------------------------------------------------------------------

    @staticmethod
    def _request(s: Session, request_id: str) -> Request:
        req = s.scalar(select(Request).where(Request.public_id == request_id))
        if req is None:
            raise NotFound(f"no request {request_id!r}", "no_request", request_id=request_id)
        return req

    def _info(self, s: Session, req: Request) -> dict[str, Any]:
        decided = list(s.scalars(select(Approval).where(Approval.request_id == req.id)
                                 .order_by(Approval.id)))
        person = s.get(Cardholder, req.cardholder_id) if req.cardholder_id else None
        card = s.get(Card, req.card_ref) if req.card_ref else None
        details = self._details(req)
        out: dict[str, Any] = {
            "request_id": req.public_id, "kind": req.kind, "state": req.state,
            "requested_by": req.requested_by, "reason": req.reason, "batch": req.batch_name,
            "certificate_serial": req.certificate_serial, "error": req.error,
            "created_at": req.created_at.isoformat(),
            "required_approvals": self.config.policy.required(RequestKind(req.kind)),
            "decisions": [{"officer": a.officer, "decision": a.decision, "reason": a.reason,
                           "at": a.at.isoformat()} for a in decided],
            "cardholder": None if person is None else {
                "ssn": person.ssn, "name": person.name, "sex": person.sex,
                "ethnicity": person.ethnicity, "birthplace": person.birthplace,
                "birth_date": person.birth_date},
            "card": None if card is None else {
                "card_id": card.card_id, "card_number": card.card_number,
                "generation": card.generation, "status": card.status,
                "sign_serial": card.sign_serial, "enc_serial": card.enc_serial},
            "csr": None,
        }
        if req.csr_der:
            csr = load_csr(req.csr_der)
            info = csr["certification_request_info"]
            out["csr"] = {"subject": format_name(info["subject"]),
                          "key_algorithm": self._key_algorithm(info["subject_pk_info"]),
                          "signature_algorithm": csr["signature_algorithm"]["algorithm"].native,
                          "public_key_sha256": hashlib.sha256(
                              info["subject_pk_info"].dump()).hexdigest()}
        if req.state == RequestState.DONE:
            for key in ("sign_cert", "enc_cert", "enveloped_key_blob", "old_sign_serial"):
                if key in details:
                    out[key] = details[key]
        if req.kind == RequestKind.REVOCATION:
            out["serials"] = details.get("serials", [])
            out["revocation_reason"] = details.get("reason")
        return out

    @staticmethod
    def _key_algorithm(spki: Any) -> str:
        from sscard.crypto.asymmetric import PublicKey

        try:
            return PublicKey.from_spki(spki.dump()).algorithm.value
        except (CryptoError, ValueError):
            return str(spki.algorithm)

    def request(self, actor: Actor, request_id: str) -> dict[str, Any]:
        self._need(actor, Role.OPERATOR, Role.OFFICER, Role.AUDITOR, clients=True)
        with self._tx() as s:
            req = self._request(s, request_id)
            self._own(actor, req)
            return self._info(s, req)

    def queue(self, actor: Actor, state: RequestState = RequestState.SUBMITTED,
              kind: RequestKind | None = None) -> list[dict[str, Any]]:
        self._need(actor, Role.OPERATOR, Role.OFFICER, Role.AUDITOR)
        with self._tx() as s:
            q = select(Request).where(Request.state == state)
            if kind is not None:
                q = q.where(Request.kind == kind)
            return [self._info(s, r) for r in s.scalars(q.order_by(Request.id).limit(500))]

    #: the orders a request list may be sorted in (the UI's column names)
    REQUEST_ORDERS: dict[str, Any] = {"created": Request.id, "kind": Request.kind,
                                      "state": Request.state,
                                      "requested_by": Request.requested_by}

    def requests_page(self, actor: Actor, *, state: RequestState | None = None,
                      kind: RequestKind | None = None, sort: str = "created",
                      descending: bool = False, offset: int = 0,
                      limit: int = 20) -> tuple[list[dict[str, Any]], int]:
        """One page of requests (state and kind filters, sorted by a REQUEST_ORDERS key) and
        how many match in all."""
        self._need(actor, Role.OPERATOR, Role.OFFICER, Role.AUDITOR)
        order = self.REQUEST_ORDERS.get(sort)
        if order is None:
            raise BadRequest(f"cannot sort requests by {sort!r}", "bad_sort", sort=sort)
        with self._tx() as s:
            q = select(Request)
            if state is not None:
                q = q.where(Request.state == state)
            if kind is not None:
                q = q.where(Request.kind == kind)
            total = int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)
            q = q.order_by(order.desc() if descending else order, Request.id)
            rows = [self._info(s, r) for r in s.scalars(q.offset(offset).limit(limit))]
            return rows, total

    def batches(self, actor: Actor) -> list[dict[str, Any]]:
        """The pre-authorised batches, newest first."""
        self._need(actor, Role.OFFICER, Role.AUDITOR)
        with self._tx() as s:
            return [{"name": b.name, "authorised_by": b.authorised_by, "limit": b.limit,
                     "used": b.used, "active": b.active, "station": b.station,
                     "cardholders": None if b.cardholders is None
                     else len(json.loads(b.cardholders)),
                     "created_at": b.created_at.isoformat(),
                     "expires_at": None if b.expires_at is None else b.expires_at.isoformat()}
                    for b in s.scalars(select(BatchAuthorisation)
                                       .order_by(BatchAuthorisation.id.desc()))]

    def search_cardholders(self, actor: Actor, text: str) -> list[dict[str, Any]]:
        self._need(actor, Role.OPERATOR, Role.OFFICER, Role.AUDITOR)
        text = text.strip()
        if not text:
            return []
        with self._tx() as s:
            like = text.replace("%", "").replace("_", "") + "%"
            people = s.scalars(select(Cardholder).where(or_(
                Cardholder.ssn.like(like), Cardholder.name.like("%" + like)))
                .order_by(Cardholder.ssn).limit(100))
            out = []
            for p in people:
                cards = s.scalars(select(Card).where(Card.cardholder_id == p.id))
                out.append({"ssn": p.ssn, "name": p.name, "birth_date": p.birth_date,
                            "cards": [{"card_number": c.card_number, "status": c.status,
                                       "sign_serial": c.sign_serial,
                                       "enc_serial": c.enc_serial} for c in cards]})
            return out

    def search_certificates(self, actor: Actor, text: str) -> list[dict[str, Any]]:
        """By serial (hex) or by the holder's social security number."""
        self._need(actor, Role.OPERATOR, Role.OFFICER, Role.AUDITOR)
        text = text.strip()
        if not text:
            return []
        with self._tx() as s:
            q = select(Card, Cardholder).join(Cardholder, Card.cardholder_id == Cardholder.id)
            if len(text) == 18 and text[:17].isdigit():
                q = q.where(Cardholder.ssn == text)
            else:
                hexs = self._serial_hex(text)
                q = q.where(or_(Card.sign_serial == hexs, Card.enc_serial == hexs))
            rows = list(s.execute(q.limit(100)))
        out = []
        for card, person in rows:
            for use, cert_serial in (("sign", card.sign_serial), ("enc", card.enc_serial)):
                if cert_serial is None:
                    continue
                status = "unknown"
                if self.ca is not None:
                    with _reaching_the_ca():
                        status = self.ca.status(Serial.parse(cert_serial)).value
                out.append({"serial": cert_serial, "use": use, "status": status, "ssn": person.ssn,
                            "name": person.name, "card_number": card.card_number})
        return out

    def audit_records(self, actor: Actor, limit: int = 200) -> list[dict[str, Any]]:
        self._need(actor, Role.AUDITOR)
        size = self.audit.size()
        start = max(1, size - limit + 1)
        return [{"seq": r.seq, "time": r.record.time, "actor": r.record.actor,
                 "action": r.record.action, "object": r.record.object,
                 "outcome": r.record.outcome, "details": r.record.details}
                for r in reversed(list(self.audit.records(start)))]

    def audit_page(self, actor: Actor, *, action: str | None = None,
                   actor_name: str | None = None, since: dt.datetime | None = None,
                   until: dt.datetime | None = None, offset: int = 0,
                   limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """One page of the audit log, newest first: records whose action is or is under
        ``action``, by ``actor_name``, at or after ``since`` and before ``until``; and how many
        match in all."""
        self._need(actor, Role.AUDITOR)

        def row(r: Any) -> dict[str, Any]:
            return {"seq": r.seq, "time": r.record.time, "actor": r.record.actor,
                    "action": r.record.action, "object": r.record.object,
                    "outcome": r.record.outcome, "details": r.record.details}

        if not (action or actor_name or since or until):
            # the unfiltered log pages by sequence number: one page read, however long the log
            size = self.audit.size()
            end = size - offset
            if end < 1:
                return [], size
            page = list(self.audit.records(max(1, end - limit + 1), end))
            return [row(r) for r in reversed(page)], size
        low = None if since is None else format_time(since)
        high = None if until is None else format_time(until)
        found = [r for r in self.audit.records(1, actions=(action,) if action else (),
                                               actor=actor_name or None)
                 if (low is None or r.record.time >= low)
                 and (high is None or r.record.time < high)]
        found.reverse()
        return [row(r) for r in found[offset:offset + limit]], len(found)

    def counts(self) -> dict[str, int]:
        with self._tx() as s:
            rows = s.execute(select(Request.state, func.count()).group_by(Request.state))
            return {state: int(n) for state, n in rows}
