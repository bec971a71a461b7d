"""The KMC's protocol logic as plain methods: escrow, recovery under dual control, callers.

Flask (``keymgmt.web``) and the CLI (``keymgmt.cli``) only translate to and from these calls.
Every method that acts for someone takes the authenticated :class:`Principal`; permissions are
decided here, not in the transport. Key material leaves only wrapped: as an SM2 envelope for a
card's signing key, or as a PKCS#12 under a one-time passphrase for a named officer.

Dual control (recovery): a request names the escrowed key (by key id, certificate serial or
owner) and the recipient; it needs ``required_approvals`` (default 2) approvals by distinct
active officers, none of them the requester nor the officer who will receive the key; one
rejection ends it; it can be completed once. Judicial recovery is the same rule on a separate
recorded path: it carries the authority, the order reference and the SHA-256 of the order
document, and it can only go to a named officer as PKCS#12 (for hand-over to the authority).
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from keymgmt import pkcs12
from keymgmt.db import (
    ApprovalRecord,
    CallerRecord,
    EscrowedKeyRecord,
    EventRecord,
    RecoveryRequestRecord,
    RecoveryStatus,
    make_engine,
    upgrade,
)
from keymgmt.errors import (
    ApprovalError,
    AuthenticationError,
    Conflict,
    KmcError,
    NotFound,
    PermissionDenied,
    SealedError,
)
from keymgmt.pkcs8_envelope import envelope_pkcs8

# the values a caller gets back; public in keymgmt.records
from keymgmt.records import EscrowResult as EscrowResult
from keymgmt.records import RecoveryResult as RecoveryResult
from keymgmt.storage import StorageKey
from sscard import httpsig
from sscard.audit import AuditAction, AuditLog
from sscard.clock import Clock, system_clock
from sscard.crypto import envelopes
from sscard.crypto.algorithms import KeyAlgorithm, KeyType
from sscard.crypto.asymmetric import PrivateKey, PublicKey
from sscard.crypto.errors import CryptoError, UnsupportedAlgorithm
from sscard.x509.values import Serial

log = logging.getLogger("sscard.kmc")

ESCROW_ALGORITHMS = frozenset({KeyAlgorithm.SM2, KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384,
                               KeyAlgorithm.RSA2048, KeyAlgorithm.RSA3072})
_NAME = re.compile(r"^[\w.@:\-]{1,128}$")


class Role(enum.StrEnum):
    CA = "ca"
    RA = "ra"
    OFFICER = "officer"
    AUDITOR = "auditor"
    #: a card terminal without a PSAM, using the KMC's authentication service
    TERMINAL = "terminal"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    role: Role


@dataclass(frozen=True)
class KmcConfig:
    required_approvals: int = 2
    escrow_algorithms: frozenset[KeyAlgorithm] = ESCROW_ALGORITHMS

    def __post_init__(self) -> None:
        if self.required_approvals < 2:
            raise ValueError("key recovery needs at least 2 approvals (dual control)")


@dataclass(frozen=True)
class CardRecipient:
    """Recover onto a card: the new card's SM2 signing public key (SubjectPublicKeyInfo DER)."""

    signing_public_key_spki: bytes


@dataclass(frozen=True)
class OfficerRecipient:
    """Recover as a PKCS#12 for this officer, under a one-time passphrase."""

    officer: str


@dataclass(frozen=True)
class JudicialOrder:
    authority: str
    order_ref: str
    document_sha256: str


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise KmcError(f"{what} must be 1-128 letters, digits or . _ @ : - (got {value!r:.60})")
    return value


def serial_hex(serial: int | str) -> str:
    """Certificate serials as upper-case hex of even length (as ``openssl x509 -serial``)."""
    try:
        return Serial.parse(serial).hex
    except (ValueError, TypeError) as exc:
        raise KmcError(f"certificate serial: {exc}") from None


def _escrow_aad(key_id: str, owner: str, algorithm: str) -> bytes:
    return b"\x00".join([b"sscard-kmc/escrow/v1", key_id.encode(), owner.encode(),
                         algorithm.encode()])


def _api_key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _envelope(key: PrivateKey, recipient: PublicKey
              ) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The escrowed private key wrapped for the recipient: (SM2EnvelopedKey DER,
    ENVELOPEDKEYBLOB, None) for SM2, else (None, None, CMS EnvelopedData of its PKCS#8)."""
    if key.algorithm is KeyAlgorithm.SM2:
        env = envelopes.wrap(key.raw, recipient.raw)
        return env.to_der(), env.to_blob(), None
    return None, None, envelope_pkcs8(key.pkcs8_der(), recipient)


def _load_public_key(spki: bytes, what: str) -> PublicKey:
    try:
        return PublicKey.from_spki(spki)
    except CryptoError as exc:
        raise KmcError(f"{what}: {exc}") from None


class KeyManagementCentre:
    """The KMC over its database and (once unsealed) its storage key."""

    def __init__(self, engine: Engine, storage_key: StorageKey | None = None,
                 config: KmcConfig | None = None, *, audit: AuditLog,
                 clock: Clock = system_clock) -> None:
        #: what the KMC reads the time from (record times); tests hand in a fake one
        self.clock = clock
        self.engine = engine
        self.config = config or KmcConfig()
        #: the project's tamper-evident audit log: every escrow, recovery step, card-key
        #: operation and caller change is recorded there before it runs (no record, no
        #: operation), whatever the entry point
        self.audit = audit
        self._storage_key = storage_key
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, storage_key: StorageKey | None = None,
             config: KmcConfig | None = None, *, audit: AuditLog,
             clock: Clock = system_clock) -> KeyManagementCentre:
        engine = make_engine(url)
        upgrade(engine)
        return cls(engine, storage_key, config, audit=audit, clock=clock)

    # -- plumbing --------------------------------------------------------------------------
    @property
    def storage_key(self) -> StorageKey:
        if self._storage_key is None:
            raise SealedError("the KMC is sealed: unseal it with the custodians' shares first")
        return self._storage_key

    @property
    def sealed(self) -> bool:
        return self._storage_key is None

    def unseal_with(self, storage_key: StorageKey) -> None:
        self._storage_key = storage_key

    def close(self) -> None:
        if self._storage_key is not None:
            self._storage_key.close()
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def _event(self, s: Session, actor: str, action: str, subject: str, **details: Any) -> None:
        s.add(EventRecord(at=self.clock(), actor=actor, action=action, subject=subject,
                          details=json.dumps(details, ensure_ascii=False, sort_keys=True)))
        log.info("%s %s %s", actor, action, subject)

    @contextmanager
    def _guarded(self, principal: Principal, action: AuditAction, subject: str,
                 **details: Any) -> Iterator[None]:
        """Run a security operation under the audit log (an 'attempt' record first, so no
        record means no operation; then success, denied or failure), and record refusals
        (role, dual control, state) in the KMC's own events. A refused operation changed
        nothing: its transaction rolled back."""
        try:
            with self.audit.operation(principal.name, action, subject[:512], details=details,
                                      refusals=(PermissionDenied, Conflict)):
                yield
        except (PermissionDenied, Conflict) as refused:
            with self._tx() as s:
                self._event(s, principal.name, f"{action.local_name}.refused", subject,
                            role=principal.role.value, reason=str(refused))
            raise

    @staticmethod
    def _require(principal: Principal, *roles: Role) -> None:
        if principal.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise PermissionDenied(
                f"{principal.name} ({principal.role.value}) may not do this; needs {allowed}"
            )

    # -- callers ---------------------------------------------------------------------------
    def add_caller(self, name: str, role: Role | str, *, by: str = "administrator") -> str:
        """Register a caller; returns its API key, shown once (only its digest is stored)."""
        return self._add_caller(name, role, by, None)

    def add_service_caller(self, name: str, role: Role | str, certificate: bytes, *,
                           by: str = "administrator") -> None:
        """Register a service identity that signs its requests (``sscard.httpsig``) with the
        key of ``certificate`` (DER). It has no usable API key (the stored digest is of a
        random key nobody ever sees)."""
        try:
            identity = httpsig.decode_certificate(certificate).identity.hex()
        except httpsig.SignatureError as exc:
            raise KmcError(f"caller {name}: {exc}") from None
        self._add_caller(name, role, by, identity)  # its API key is dropped unseen

    def _add_caller(self, name: str, role: Role | str, by: str, identity: str | None) -> str:
        _check_name(name, "caller name")
        try:
            role = Role(role)
        except ValueError:
            raise KmcError(f"unknown role {role!r}; use one of "
                           f"{', '.join(r.value for r in Role)}") from None
        api_key = "kmc_" + secrets.token_urlsafe(32)
        try:
            with self.audit.operation(by, AuditAction.KMC_CALLER_ADD, name,
                                      details={"role": role.value},
                                      refusals=(IntegrityError,)), self._tx() as s:
                s.add(CallerRecord(name=name, role=role.value,
                                   api_key_sha256=_api_key_digest(api_key), active=True,
                                   certificate_sha256=identity, created_at=self.clock()))
                self._event(s, by, "caller.add", name, role=role.value,
                            **({"certificate_sha256": identity} if identity else {}))
        except IntegrityError:
            raise Conflict(f"a caller named {name!r} or with this certificate already "
                           "exists") from None
        return api_key

    def deactivate_caller(self, name: str, *, by: str = "administrator") -> None:
        with self.audit.operation(by, AuditAction.KMC_CALLER_DEACTIVATE, name,
                                  refusals=(NotFound,)), self._tx() as s:
            rec = s.scalar(select(CallerRecord).where(CallerRecord.name == name))
            if rec is None:
                raise NotFound(f"no caller named {name!r}")
            rec.active = False
            self._event(s, by, "caller.deactivate", name)

    def authenticate(self, api_key: str | None) -> Principal:
        if not api_key:
            raise AuthenticationError("no API key given (Authorization: Bearer <key>)")
        with self._tx() as s:
            rec = s.scalar(select(CallerRecord).where(
                CallerRecord.api_key_sha256 == _api_key_digest(api_key)))
            if rec is None or not rec.active:
                raise AuthenticationError("unknown or deactivated API key")
            return Principal(rec.name, Role(rec.role))

    def authenticate_certificate(self, identity: bytes) -> Principal:
        """The caller bound to a certificate (``httpsig.DecodedCertificate.identity``), once
        its request signature has verified."""
        with self._tx() as s:
            rec = s.scalar(select(CallerRecord).where(
                CallerRecord.certificate_sha256 == identity.hex()))
            if rec is None or not rec.active:
                raise AuthenticationError("the request's certificate belongs to no active caller")
            return Principal(rec.name, Role(rec.role))

    def _active_officer(self, s: Session, name: str) -> bool:
        rec = s.scalar(select(CallerRecord).where(CallerRecord.name == name))
        return rec is not None and rec.active and rec.role == Role.OFFICER.value

    # -- escrow ----------------------------------------------------------------------------
    def escrow(self, principal: Principal, owner: str, recipient_spki: bytes,
               algorithm: KeyAlgorithm | str = KeyAlgorithm.SM2, *,
               request_id: str | None = None) -> EscrowResult:
        """Generate an encryption key pair for ``owner``, archive the private key wrapped under
        the storage key, and return it wrapped for ``recipient_spki`` (the card's signing key).
        With ``request_id`` (the caller's own id for this escrow) asking again returns the key
        escrowed the first time, enveloped afresh: a lost answer makes no second key pair."""
        with self._guarded(principal, AuditAction.KMC_ESCROW_GENERATE, str(owner)[:128],
                           algorithm=str(algorithm)):
            return self._escrow(principal, owner, recipient_spki, algorithm, request_id)

    def _escrow(self, principal: Principal, owner: str, recipient_spki: bytes,
                algorithm: KeyAlgorithm | str, request_id: str | None) -> EscrowResult:
        self._require(principal, Role.CA, Role.RA)
        _check_name(owner, "owner")
        try:
            alg = KeyAlgorithm.parse(algorithm) if isinstance(algorithm, str) else algorithm
        except UnsupportedAlgorithm as exc:
            raise KmcError(str(exc)) from None
        if alg not in self.config.escrow_algorithms:
            raise KmcError(f"{alg.value} keys are not escrowed here (encryption keys: "
                           f"{', '.join(sorted(a.value for a in self.config.escrow_algorithms))})")
        recipient = _load_public_key(recipient_spki, "recipient signing public key")
        if alg is KeyAlgorithm.SM2 and recipient.algorithm is not KeyAlgorithm.SM2:
            raise KmcError("an SM2 encryption key is enveloped for an SM2 signing public key; "
                           f"the recipient key is {recipient.algorithm.value}")
        if recipient.algorithm.key_type not in (KeyType.SM2, KeyType.RSA):
            raise KmcError("keys are enveloped for an SM2 or RSA public key; the recipient key "
                           f"is {recipient.algorithm.value}")
        storage = self.storage_key
        request_key = None if request_id is None else \
            f"{principal.name}/{_check_name(request_id, 'request_id')}"
        recipient_sha256 = hashlib.sha256(recipient.spki_der()).hexdigest()
        if request_key is not None:
            earlier = self._escrowed_for(request_key, owner, alg, recipient)
            if earlier is not None:
                return earlier
        key = PrivateKey.generate(alg)
        spki = key.public_key().spki_der()
        key_id = "ek-" + uuid.uuid4().hex
        wrapped = storage.wrap(key.pkcs8_der(), _escrow_aad(key_id, owner, alg.value))
        try:
            with self._tx() as s:
                s.add(EscrowedKeyRecord(
                    key_id=key_id, owner=owner, algorithm=alg.value, public_key_spki=spki,
                    public_key_sha256=hashlib.sha256(spki).hexdigest(),
                    wrapped_private_key=wrapped, storage_key_id=storage.key_id,
                    requested_by=principal.name, created_at=self.clock(),
                    request_key=request_key, recipient_sha256=recipient_sha256,
                ))
                self._event(s, principal.name, "escrow.generate", key_id, owner=owner,
                            algorithm=alg.value, recipient_sha256=recipient_sha256)
        except IntegrityError:
            # the same request committed by another worker at the same moment: its key
            earlier = self._escrowed_for(request_key or "", owner, alg, recipient)
            if earlier is None:
                raise
            return earlier
        return EscrowResult(key_id, owner, alg.value, spki, *_envelope(key, recipient))

    def _escrowed_for(self, request_key: str, owner: str, alg: KeyAlgorithm,
                      recipient: PublicKey) -> EscrowResult | None:
        """The key escrowed for the request of idempotency key ``request_key``, enveloped
        again for ``recipient``; refused when the id was used for another escrow."""
        with self._tx() as s:
            rec = s.scalar(select(EscrowedKeyRecord).where(
                EscrowedKeyRecord.request_key == request_key))
            if rec is None:
                return None
            if (rec.owner, rec.algorithm, rec.recipient_sha256) != (
                    owner, alg.value, hashlib.sha256(recipient.spki_der()).hexdigest()):
                raise Conflict(f"request id {request_key.rsplit('/', 1)[-1]!r} was used for "
                               "another escrow (another owner, algorithm or card); use a new id")
            pkcs8_der = self.storage_key.unwrap(
                rec.wrapped_private_key, _escrow_aad(rec.key_id, rec.owner, rec.algorithm))
            return EscrowResult(rec.key_id, rec.owner, rec.algorithm, rec.public_key_spki,
                                *_envelope(PrivateKey.from_pkcs8(pkcs8_der), recipient))

    def attach_certificate(self, principal: Principal, key_id: str, certificate_der: bytes) -> str:
        """Bind the encryption certificate the CA issued to an escrowed key: by the CA's caller
        for any key, or by the RA caller that escrowed this key (and no other's), so the RA
        needs no CA credential at the KMC. The certificate must certify the escrowed public
        key; a key keeps its first certificate (the same one again is a no-op, so a retried
        call is harmless) and a serial is bound to one key only."""
        with self._guarded(principal, AuditAction.KMC_ESCROW_CERTIFICATE, key_id):
            return self._attach_certificate(principal, key_id, certificate_der)

    def _attach_certificate(self, principal: Principal, key_id: str,
                            certificate_der: bytes) -> str:
        from sscard.x509.errors import X509ParseError
        from sscard.x509.parse import load_certificate

        self._require(principal, Role.CA, Role.RA)
        try:
            cert = load_certificate(certificate_der)
        except X509ParseError as exc:
            raise KmcError(str(exc)) from None
        cert_spki = cert["tbs_certificate"]["subject_public_key_info"].dump()
        serial = serial_hex(cert.serial_number)
        with self._tx() as s:
            rec = self._key_by_id(s, key_id)
            if principal.role is Role.RA and rec.requested_by != principal.name:
                raise PermissionDenied(f"{principal.name} (ra) may attach certificates only to "
                                       f"keys it escrowed; {key_id} is not one of them")
            if _load_public_key(cert_spki, "certificate public key") != _load_public_key(
                    rec.public_key_spki, "escrowed public key"):
                raise KmcError(f"the certificate's public key is not the escrowed key {key_id}")
            if rec.certificate_der is not None:
                if rec.certificate_der == cert.dump():
                    return serial  # the same binding again (a retry): nothing changes
                raise Conflict(f"{key_id} already has certificate {rec.certificate_serial}")
            other = s.scalar(select(EscrowedKeyRecord.key_id).where(
                EscrowedKeyRecord.certificate_serial == serial))
            if other is not None:
                raise Conflict(f"certificate serial {serial} is already bound to {other}")
            rec.certificate_serial = serial
            rec.certificate_der = cert.dump()
            self._event(s, principal.name, "escrow.certificate", key_id, serial=serial)
        return serial

    @staticmethod
    def _key_by_id(s: Session, key_id: str) -> EscrowedKeyRecord:
        rec = s.scalar(select(EscrowedKeyRecord).where(EscrowedKeyRecord.key_id == key_id))
        if rec is None:
            raise NotFound(f"no escrowed key {key_id!r}")
        return rec

    @staticmethod
    def _key_info(rec: EscrowedKeyRecord) -> dict[str, Any]:
        return {"key_id": rec.key_id, "owner": rec.owner, "algorithm": rec.algorithm,
                "public_key_spki": rec.public_key_spki, "certificate_serial":
                rec.certificate_serial, "created_at": rec.created_at.isoformat(),
                "requested_by": rec.requested_by}

    def find_keys(self, principal: Principal, *, owner: str | None = None,
                  certificate_serial: str | int | None = None) -> list[dict[str, Any]]:
        self._require(principal, Role.CA, Role.RA, Role.OFFICER, Role.AUDITOR)
        q = select(EscrowedKeyRecord).order_by(EscrowedKeyRecord.id)
        if owner is not None:
            q = q.where(EscrowedKeyRecord.owner == owner)
        if certificate_serial is not None:
            q = q.where(EscrowedKeyRecord.certificate_serial == serial_hex(certificate_serial))
        with self._tx() as s:
            return [self._key_info(r) for r in s.scalars(q)]

    # -- recovery --------------------------------------------------------------------------
    def request_recovery(
        self,
        principal: Principal,
        *,
        recipient: CardRecipient | OfficerRecipient,
        reason: str,
        key_id: str | None = None,
        certificate_serial: str | int | None = None,
        owner: str | None = None,
        judicial: JudicialOrder | None = None,
    ) -> dict[str, Any]:
        with self._guarded(principal,
                           AuditAction.KMC_RECOVERY_JUDICIAL_REQUEST if judicial
                           else AuditAction.KMC_RECOVERY_REQUEST,
                           key_id or owner or str(certificate_serial)):
            return self._request_recovery(principal, recipient, reason, key_id,
                                          certificate_serial, owner, judicial)

    def _request_recovery(
        self, principal: Principal, recipient: CardRecipient | OfficerRecipient, reason: str,
        key_id: str | None, certificate_serial: str | int | None, owner: str | None,
        judicial: JudicialOrder | None,
    ) -> dict[str, Any]:
        self._require(principal, *((Role.OFFICER,) if judicial else (Role.OFFICER, Role.RA)))
        if not reason or not reason.strip():
            raise KmcError("a recovery request needs a reason")
        if sum(x is not None for x in (key_id, certificate_serial, owner)) != 1:
            raise KmcError("name the key by exactly one of key id, certificate serial or owner")
        if judicial is not None:
            if not isinstance(recipient, OfficerRecipient):
                raise KmcError("judicial recovery goes to a named officer as PKCS#12, "
                               "not onto a card")
            if not (judicial.authority.strip() and judicial.order_ref.strip()):
                raise KmcError("judicial recovery needs the authority and the order reference")
            if not re.fullmatch(r"[0-9a-f]{64}", judicial.document_sha256):
                raise KmcError("judicial order document SHA-256 must be 64 lower-case hex digits")
        recipient_spki = None
        if isinstance(recipient, CardRecipient):
            pub = _load_public_key(recipient.signing_public_key_spki, "card signing public key")
            if pub.algorithm is not KeyAlgorithm.SM2:
                raise KmcError("a card recipient must be an SM2 signing public key")
            recipient_spki = pub.spki_der()
        with self._tx() as s:
            if isinstance(recipient, OfficerRecipient):
                if not self._active_officer(s, recipient.officer):
                    raise KmcError(f"recipient {recipient.officer!r} is not an active officer")
            rec = self._find_one(s, key_id, certificate_serial, owner)
            if recipient_spki is not None and rec.algorithm != KeyAlgorithm.SM2.value:
                raise KmcError(f"{rec.key_id} is a {rec.algorithm} key; only SM2 keys can be "
                               "recovered onto a card (use an officer PKCS#12)")
            request_id = "rr-" + uuid.uuid4().hex
            req = RecoveryRequestRecord(
                request_id=request_id, escrowed_key_id=rec.id, requested_by=principal.name,
                reason=reason.strip(),
                recipient_kind="card" if recipient_spki is not None else "pkcs12",
                recipient_spki=recipient_spki,
                recipient_officer=getattr(recipient, "officer", None),
                judicial=judicial is not None,
                judicial_authority=judicial.authority if judicial else None,
                judicial_order_ref=judicial.order_ref if judicial else None,
                judicial_document_sha256=judicial.document_sha256 if judicial else None,
                required_approvals=self.config.required_approvals, status=RecoveryStatus.PENDING,
                created_at=self.clock(),
            )
            s.add(req)
            action = "recovery.judicial.request" if judicial else "recovery.request"
            self._event(s, principal.name, action, request_id, key_id=rec.key_id,
                        owner=rec.owner, recipient=req.recipient_kind,
                        recipient_officer=req.recipient_officer, reason=req.reason,
                        **({"authority": judicial.authority, "order_ref": judicial.order_ref,
                            "document_sha256": judicial.document_sha256} if judicial else {}))
            s.flush()
            return self._request_info(s, req, rec)

    def _find_one(self, s: Session, key_id: str | None, serial: str | int | None,
                  owner: str | None) -> EscrowedKeyRecord:
        if key_id is not None:
            return self._key_by_id(s, key_id)
        if serial is not None:
            hexs = serial_hex(serial)
            rec = s.scalar(select(EscrowedKeyRecord).where(
                EscrowedKeyRecord.certificate_serial == hexs))
            if rec is None:
                raise NotFound(f"no escrowed key for certificate serial {hexs}")
            return rec
        recs = list(s.scalars(select(EscrowedKeyRecord).where(EscrowedKeyRecord.owner == owner)))
        if not recs:
            raise NotFound(f"no escrowed key for owner {owner!r}")
        if len(recs) > 1:
            raise Conflict(f"owner {owner!r} has {len(recs)} escrowed keys "
                           f"({', '.join(r.key_id for r in recs)}); name one by key id or "
                           "certificate serial")
        return recs[0]

    def _request_info(self, s: Session, req: RecoveryRequestRecord,
                      key: EscrowedKeyRecord | None = None) -> dict[str, Any]:
        key = key or s.get(EscrowedKeyRecord, req.escrowed_key_id)
        assert key is not None
        approvals = list(s.scalars(select(ApprovalRecord).where(
            ApprovalRecord.request_id == req.id).order_by(ApprovalRecord.id)))
        return {
            "request_id": req.request_id, "key_id": key.key_id, "owner": key.owner,
            "requested_by": req.requested_by, "reason": req.reason,
            "recipient": req.recipient_kind, "recipient_officer": req.recipient_officer,
            "judicial": req.judicial, "status": req.status,
            "required_approvals": req.required_approvals,
            "approvals": [a.officer for a in approvals if a.decision == "approve"],
            "rejections": [a.officer for a in approvals if a.decision == "reject"],
        }

    def _request(self, s: Session, request_id: str, lock: bool = False) -> RecoveryRequestRecord:
        # Deciding and completing lock the request row (PostgreSQL: SELECT ... FOR UPDATE), so
        # two officers approving at once both count and a result is released once; SQLite
        # serialises writers with BEGIN IMMEDIATE already.
        q = select(RecoveryRequestRecord).where(RecoveryRequestRecord.request_id == request_id)
        req = s.scalar(q.with_for_update() if lock else q)
        if req is None:
            raise NotFound(f"no recovery request {request_id!r}")
        return req

    def recovery_status(self, principal: Principal, request_id: str) -> dict[str, Any]:
        self._require(principal, Role.OFFICER, Role.RA, Role.AUDITOR)
        with self._tx() as s:
            return self._request_info(s, self._request(s, request_id))

    def _decide(self, principal: Principal, request_id: str, decision: str,
                comment: str) -> dict[str, Any]:
        self._require(principal, Role.OFFICER)
        with self._tx() as s:
            req = self._request(s, request_id, lock=True)
            if req.status is not RecoveryStatus.PENDING:
                raise Conflict(f"recovery request {request_id} is {req.status}, not pending")
            if principal.name == req.requested_by:
                raise ApprovalError(f"{principal.name} requested this recovery and may not "
                                    f"{decision} it (dual control)")
            if principal.name == req.recipient_officer:
                raise ApprovalError(f"{principal.name} is to receive the key and may not "
                                    f"{decision} its recovery (dual control)")
            already = s.scalar(select(ApprovalRecord).where(
                ApprovalRecord.request_id == req.id, ApprovalRecord.officer == principal.name))
            if already is not None:
                raise ApprovalError(f"{principal.name} has already decided on {request_id} "
                                    f"({already.decision}); a second officer must approve")
            s.add(ApprovalRecord(request_id=req.id, officer=principal.name, decision=decision,
                                 comment=comment, created_at=self.clock()))
            s.flush()
            if decision == "reject":
                req.status = RecoveryStatus.REJECTED
            else:
                count = s.scalar(select(func.count()).select_from(ApprovalRecord).where(
                    ApprovalRecord.request_id == req.id, ApprovalRecord.decision == "approve"))
                if (count or 0) >= req.required_approvals:
                    req.status = RecoveryStatus.APPROVED
            prefix = "recovery.judicial" if req.judicial else "recovery"
            self._event(s, principal.name, f"{prefix}.{decision}", request_id, comment=comment,
                        status=req.status)
            return self._request_info(s, req)

    def approve(self, principal: Principal, request_id: str, comment: str = "") -> dict[str, Any]:
        with self._guarded(principal, AuditAction.KMC_RECOVERY_APPROVE, request_id):
            return self._decide(principal, request_id, "approve", comment)

    def reject(self, principal: Principal, request_id: str, comment: str = "") -> dict[str, Any]:
        with self._guarded(principal, AuditAction.KMC_RECOVERY_REJECT, request_id):
            return self._decide(principal, request_id, "reject", comment)

    def complete_recovery(self, principal: Principal, request_id: str) -> RecoveryResult:
        """Release the key to the recipient once the request is approved; only once."""
        with self._guarded(principal, AuditAction.KMC_RECOVERY_COMPLETE, request_id):
            return self._complete(principal, request_id)

    def _complete(self, principal: Principal, request_id: str) -> RecoveryResult:
        self._require(principal, Role.OFFICER, Role.RA)
        storage = self.storage_key
        with self._tx() as s:
            req = self._request(s, request_id, lock=True)
            approvals = s.scalar(select(func.count()).select_from(ApprovalRecord).where(
                ApprovalRecord.request_id == req.id, ApprovalRecord.decision == "approve")) or 0
            if req.status is RecoveryStatus.COMPLETED:
                raise Conflict(f"recovery request {request_id} was already completed")
            if req.status is RecoveryStatus.REJECTED:
                raise ApprovalError(f"recovery request {request_id} was rejected")
            if req.status is not RecoveryStatus.APPROVED or approvals < req.required_approvals:
                raise ApprovalError(
                    f"recovery request {request_id} has {approvals} of the "
                    f"{req.required_approvals} approvals it needs from distinct officers"
                )
            allowed = req.recipient_officer if req.recipient_kind == "pkcs12" else req.requested_by
            if principal.name != allowed:
                raise PermissionDenied(f"only {allowed} may collect the result of {request_id}")
            key_rec = s.get(EscrowedKeyRecord, req.escrowed_key_id)
            assert key_rec is not None
            pkcs8_der = storage.unwrap(
                key_rec.wrapped_private_key,
                _escrow_aad(key_rec.key_id, key_rec.owner, key_rec.algorithm))
            key = PrivateKey.from_pkcs8(pkcs8_der)
            if key.public_key().spki_der() != key_rec.public_key_spki:
                raise KmcError(f"archived key {key_rec.key_id} does not match its public key")
            if req.recipient_kind == "card":
                assert req.recipient_spki is not None
                card = PublicKey.from_spki(req.recipient_spki)
                env = envelopes.wrap(key.raw, card.raw)
                result = RecoveryResult(request_id, key_rec.key_id, env.to_der(), env.to_blob())
            else:
                passphrase = secrets.token_urlsafe(18)
                pfx = pkcs12.build(pkcs8_der, passphrase.encode(), key_rec.certificate_der,
                                   friendly_name=f"{key_rec.owner} {key_rec.key_id}")
                result = RecoveryResult(request_id, key_rec.key_id, pkcs12=pfx,
                                        pkcs12_passphrase=passphrase)
            req.status = RecoveryStatus.COMPLETED
            req.completed_at = self.clock()
            prefix = "recovery.judicial" if req.judicial else "recovery"
            self._event(s, principal.name, f"{prefix}.complete", request_id,
                        key_id=key_rec.key_id, owner=key_rec.owner,
                        recipient=req.recipient_kind, recipient_officer=req.recipient_officer)
        return result

    # -- events ----------------------------------------------------------------------------
    def events(self, principal: Principal, action_prefix: str = "") -> list[dict[str, Any]]:
        self._require(principal, Role.AUDITOR, Role.OFFICER)
        with self._tx() as s:
            q = select(EventRecord).order_by(EventRecord.id)
            if action_prefix:
                q = q.where(EventRecord.action.startswith(action_prefix))
            return [{"at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                     "subject": e.subject, "details": json.loads(e.details)}
                    for e in s.scalars(q)]
