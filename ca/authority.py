"""The CA's library API: what the CLI, the OCSP/TSA service, the KMC, the RA and the gateway call.

``CertificateAuthority.open(home)`` gives the data directory's default issuing CA (or a named
one, the root included); every method is a function of the database and the CA's key handle.
A certificate is returned only after its row is committed: build the TBS, sign, insert, commit,
then return. Every issuance, revocation, CRL and hierarchy change is recorded in the audit log the
caller hands in (required), whatever the entry point (HTTP, CLI, library): no record, no
operation (``sscard.audit.AuditUnavailable``). When the audit log's tables live in the CA's own
database, a single issuance writes its certificate, request and audit records in one transaction;
a served CA (``enable_group_commit``) shares that transaction and its commit among the request
threads of a worker (``sscard.groupcommit``). Serials are random 159-bit numbers, unique per
issuer by a database constraint; on the (astronomically unlikely) collision the chunk is signed
again with fresh serials.

Data directory layout::

    <home>/ca.toml            the hierarchy configuration used at init
    <home>/ca.db              SQLite database (unless the config names a PostgreSQL URL)
    <home>/ca/keys/*.key.pem  encrypted PKCS#8 keys (CAs, OCSP responder, TSA)
    <home>/secrets/ca.pass    generated key passphrase (mode 0600), unless one was given
    <home>/profiles/*.toml    optional profile overrides and additions
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from asn1crypto import crl as asn1crl
from asn1crypto import csr as asn1csr
from asn1crypto import x509
from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from ca import storage
from ca.config import CASpec, HierarchyConfig, load_config, parse_config
from ca.crl import build_crl, encode_rows
from ca.csr_reader import CsrParts
from ca.errors import (
    AlreadyInitialised,
    AlreadyRevoked,
    CAError,
    NotInitialised,
    ProfileError,
    RequestRefused,
    StorageError,
    UnknownCertificate,
)
from ca.issuance import (
    Approved,
    Issuer,
    check_csr,
    check_public_key,
    random_serial,
    sign_certificate,
    validity_of,
)
from ca.keystore import create_key, load_key
from ca.profile import Profile, load_profiles
from ca.records import (
    CertificateStatus,
    IssuedCertificate,
    RevocationReason,
    Status,
    serial_to_hex,
)
from ca.storage import CARecord, CertificateRecord, CRLRecord, RequestRecord
from sscard import metrics
from sscard.audit import (
    AuditAction,
    AuditError,
    AuditLog,
    AuditUnavailable,
    Operation,
    StoredRecord,
    local_actor,
)
from sscard.audit.records import (
    MAX_DETAILS_BYTES,
    AuditRecord,
    details_size,
    fitting_chunks,
)
from sscard.clock import Clock
from sscard.clock import system_clock as utcnow
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError
from sscard.groupcommit import GroupCommit, GroupCommitError
from sscard.httpsig import SignatureError
from sscard.keys.base import KeyHandle
from sscard.keys.software import SoftwareKey
from sscard.secrets_input import read_secret_file
from sscard.sqlschema import WRITE, DriverStatement
from sscard.x509.builder import CsrBuilder
from sscard.x509.errors import X509Error
from sscard.x509.names import name_attribute, parse_name
from sscard.x509.parse import load_certificate
from sscard.x509.values import Serial
from sscard.x509.verify import verify_certificate_signature

T = TypeVar("T")
log = logging.getLogger(__name__)

CONFIG_FILE = "ca.toml"
DB_FILE = "ca.db"
PASS_FILE = Path("secrets") / "ca.pass"
DATABASE_URL_ENV = "SSCARD_CA_DATABASE_URL"
SERIAL_RETRIES = 3
#: a caller's own id for an issuance request (its idempotency key at the CA)
REQUEST_ID = re.compile(r"[\w.:\-]{1,128}")
#: room a record's details keep, beside a list of items, for its key and ``attempt_seq``
_LIST_OVERHEAD = 64
# A delta CRL lists revocations since its base's thisUpdate minus this margin, so a revocation
# committed while the base was being built is never missed (listing one twice is harmless).
DELTA_OVERLAP = dt.timedelta(minutes=5)


#: done in the transaction that stores a certificate, which it refuses by raising
Claim = Callable[[Connection], None]

# Statements of the per-request paths, built once: building one costs more than running it
# on SQLite (construction and its cache key, every time).
_SELECT_CERTIFICATE = select(CertificateRecord).where(
    CertificateRecord.issuer_id == bindparam("issuer_id"),
    CertificateRecord.serial == bindparam("serial"))
_INSERT_CERTIFICATE = DriverStatement(insert(CertificateRecord).values(
    {c: bindparam(c) for c in ("issuer_id", "serial", "profile", "subject", "not_before",
                               "not_after", "issued_at", "der", "status")}))
_SELECT_GENERATION = select(CARecord.revocation_generation).where(
    CARecord.id == bindparam("ca_id"))
_INSERT_REQUEST = DriverStatement(insert(RequestRecord).values(
    {c: bindparam(c) for c in ("issuer_id", "kind", "profile", "request_der",
                               "certificate_serial", "received_at", "request_key")}))

# refusals of a request (not failures of the CA): recorded as outcome 'denied'
_REFUSALS = (RequestRefused, ProfileError, UnknownCertificate, AlreadyRevoked, NotInitialised,
             AlreadyInitialised, CryptoError, X509Error, SignatureError)


def _audited(audit: AuditLog, actor: str, action: AuditAction, obj: str,
             **details: Any) -> contextlib.AbstractContextManager[Operation]:
    """Run a CA operation under the audit log: the 'attempt' record first (no record, no
    operation), then 'success', 'denied' (a refused request, with the reason) or 'failure'."""
    return audit.operation(actor, action, obj[:512], details=details, refusals=_REFUSALS)


@dataclass(frozen=True)
class IssueRequest:
    """One entry of a batch: a CSR, or a public key with its subject.

    For ``issue_each`` also: ``request_id``, the caller's own id for the entry (its
    idempotency key, as for ``issue_from_csr``), and ``attested_key``, the SHA-256 of the CSR's
    SubjectPublicKeyInfo when the (authorised) caller has verified possession itself
    (``ca.issuance.check_csr``)."""

    csr: asn1csr.CertificationRequest | bytes | None = None
    public_key: PublicKey | None = None
    subject: x509.Name | str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    attested_key: bytes | None = None
    #: why the front end could not read the entry: recorded and answered as a refusal
    unreadable: str | None = None


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one entry of ``issue_each``: its certificate (``repeated``: the one
    issued earlier for the same request id), or why it was refused."""

    issued: IssuedCertificate | None = None
    refused: str | None = None
    repeated: bool = False
    #: the refusal as raised (an in-process caller of one request re-raises it)
    error: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class _Entry:
    """One issuance of ``_issue_entries``: its check, its idempotency key, its attempt record."""

    check: Callable[[], Approved]
    key: str | None
    attempt: dict[str, Any]


@dataclass(frozen=True)
class Signer:
    """A key handle with the certificate that names it (OCSP responder, TSA)."""

    key: KeyHandle
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True)
class InitResult:
    home: Path
    database_url: str
    passphrase_file: Path | None  # set when a passphrase was generated and stored
    pending_csrs: dict[str, bytes]  # issuing CA name -> CSR DER, when the root is offline
    active: tuple[str, ...]  # CAs ready to issue


@dataclass(frozen=True)
class _CA:
    id: int
    name: str
    role: str
    parent_id: int | None
    state: str
    key_spec: str
    certificate_der: bytes | None
    csr_der: bytes | None


def _read_ca(row: Any) -> _CA:
    return _CA(row.id, row.name, row.role, row.parent_id, row.state, row.key_spec,
               row.certificate_der, row.csr_der)


def _database_url(home: Path, config: HierarchyConfig, explicit: str | None) -> str:
    return (explicit or os.environ.get(DATABASE_URL_ENV) or config.database_url
            or storage.sqlite_url(home / DB_FILE))


def _root_profile(profiles: Mapping[str, Profile], spec: CASpec) -> Profile:
    base = profiles["sub-ca"]
    return dataclasses.replace(base, name="root", path_length=spec.path_length,
                               validity_days=spec.validity_days, crl_distribution_point=False,
                               authority_info_access=False, certificate_policies=())


def _issuing_profile(profiles: Mapping[str, Profile], spec: CASpec) -> Profile:
    return dataclasses.replace(profiles["sub-ca"], validity_days=spec.validity_days,
                               path_length=spec.path_length)


def _write(engine: Engine) -> Any:
    """A connection whose transactions take the write lock at BEGIN (see sscard.sqlschema)."""
    return engine.connect().execution_options(**WRITE)


def _store_passphrase(home: Path) -> tuple[bytes, Path]:
    target = home / PASS_FILE
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target.parent, 0o700)
    passphrase = secrets.token_urlsafe(32)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(passphrase + "\n")
    return passphrase.encode(), target


def _stored_passphrase(home: Path) -> bytes | None:
    path = home / PASS_FILE
    if not path.exists():
        return None
    # the one secret-file check: a stored passphrase others can read is refused, not used
    text = read_secret_file(path, "stored CA key passphrase").decode("utf-8").splitlines()
    return text[0].encode() if text and text[0] else None


def initialise(
    home: str | Path,
    config: str | Path | HierarchyConfig | None = None,
    passphrase: bytes | None = None,
    issuing_only: bool = False,
    database_url: str | None = None,
    *,
    audit: AuditLog,
    actor: str | None = None,
) -> InitResult:
    """Create the hierarchy the config describes (an SM2 root and issuing CA by default),
    recorded in ``audit`` (``ca.hierarchy.init``).

    ``issuing_only`` (or ``offline = true`` under ``[root]``): create only the issuing CAs'
    keys and CSRs; a root elsewhere signs them and ``import_issuing_certificate`` completes them.
    """
    home = Path(home)
    with _audited(audit, actor or local_actor(), AuditAction.CA_INIT, f"home:{home}",
                  issuing_only=issuing_only) as op:
        result = _initialise(home, config, passphrase, issuing_only, database_url)
        op.set(active=list(result.active), pending=sorted(result.pending_csrs),
               database=_safe_url(result.database_url))
    return result


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _initialise(home: Path, config: str | Path | HierarchyConfig | None,
                passphrase: bytes | None, issuing_only: bool,
                database_url: str | None) -> InitResult:
    if (home / CONFIG_FILE).exists():
        raise AlreadyInitialised(f"{home} already holds a CA ({home / CONFIG_FILE} exists)")
    cfg = config if isinstance(config, HierarchyConfig) else load_config(
        Path(config) if config is not None else None)
    offline = issuing_only or cfg.root_offline
    profiles = load_profiles([home / "profiles"])
    home.mkdir(parents=True, exist_ok=True)
    # what this call creates on disk, removed again if it fails, so a refused init (a bad
    # config, a token without the mechanism) leaves the directory as it was
    before = _files_under(home)
    pass_file = None
    url = _database_url(home, cfg, database_url)
    try:
        if passphrase is None:
            passphrase, pass_file = _store_passphrase(home)
        result = _create_hierarchy(home, cfg, profiles, passphrase, offline, url)
    except BaseException:
        for created in sorted(_files_under(home) - before, reverse=True):
            created.unlink(missing_ok=True)
        raise
    (home / CONFIG_FILE).write_text(cfg.text, encoding="utf-8")
    pending, active = result
    return InitResult(home, url, pass_file, pending, tuple(active))


def _files_under(home: Path) -> set[Path]:
    return {p for p in home.rglob("*") if p.is_file()}


def _create_hierarchy(home: Path, cfg: HierarchyConfig, profiles: Mapping[str, Profile],
                      passphrase: bytes, offline: bool, url: str) -> tuple[
                          dict[str, bytes], list[str]]:
    engine = storage.make_engine(url)
    try:
        storage.upgrade(engine)
        now = utcnow()
        pending: dict[str, bytes] = {}
        active: list[str] = []
        with _write(engine) as conn, conn.begin():
            existing = conn.execute(select(func.count()).select_from(CARecord)).scalar_one()
            if existing:
                raise AlreadyInitialised(f"the database at {url} already holds CAs")
            root_issuer: Issuer | None = None
            root_id: int | None = None
            if not offline:
                root_key, root_spec = create_key(home, cfg.root, passphrase)
                approved = check_public_key(root_key.public_key(), cfg.root.subject,
                                            _root_profile(profiles, cfg.root))
                root_der = sign_certificate(None, approved, random_serial(), now,
                                            self_key=root_key)
                root_id = conn.execute(insert(CARecord).values(
                    name=cfg.root.name, role="root", parent_id=None, subject=cfg.root.subject,
                    state="active", key_spec=root_spec, certificate_der=root_der, csr_der=None,
                    created_at=now)).inserted_primary_key[0]
                root_issuer = Issuer(x509.Certificate.load(root_der), root_key,
                                     cfg.root.crl_url, cfg.root.ocsp_url,
                                     cfg.root.ca_issuers_url)
                active.append(cfg.root.name)
            for spec in cfg.issuing:
                key, key_spec = create_key(home, spec, passphrase)
                if root_issuer is None:
                    csr = CsrBuilder().subject(parse_name(spec.subject)).add_extension(
                        "basic_constraints", {"ca": True, "path_len_constraint":
                                              spec.path_length}, critical=True).sign(key)
                    conn.execute(insert(CARecord).values(
                        name=spec.name, role="issuing", parent_id=None, subject=spec.subject,
                        state="pending", key_spec=key_spec, certificate_der=None,
                        csr_der=csr.dump(), created_at=now))
                    pending[spec.name] = csr.dump()
                    continue
                approved = check_public_key(key.public_key(), spec.subject,
                                            _issuing_profile(profiles, spec))
                serial = random_serial()
                der = sign_certificate(root_issuer, approved, serial, now)
                conn.execute(insert(CARecord).values(
                    name=spec.name, role="issuing", parent_id=root_id, subject=spec.subject,
                    state="active", key_spec=key_spec, certificate_der=der, csr_der=None,
                    created_at=now))
                nb, na = validity_of(root_issuer, approved, now)
                assert root_id is not None
                conn.execute(insert(CertificateRecord).values(
                    issuer_id=root_id, serial=serial_to_hex(serial), profile="sub-ca",
                    subject=approved.subject_text, not_before=nb, not_after=na, issued_at=now,
                    der=der, status=Status.GOOD))
                active.append(spec.name)
    finally:
        engine.dispose()
    return pending, active


def import_issuing_certificate(
    home: str | Path,
    certificate: bytes,
    root_certificate: bytes,
    name: str | None = None,
    database_url: str | None = None,
    *,
    audit: AuditLog,
    actor: str | None = None,
) -> None:
    """Complete an issuing CA created with an offline root: check that ``certificate`` is for
    the pending CA's key and is signed by ``root_certificate``, then activate the CA
    (recorded in ``audit`` as ``ca.hierarchy.import_issuing``)."""
    home = Path(home)
    with _audited(audit, actor or local_actor(), AuditAction.CA_ISSUING_IMPORT,
                  f"ca:{name or '(first issuing)'}"):
        _import_issuing_certificate(home, certificate, root_certificate, name, database_url)


def _import_issuing_certificate(home: Path, certificate: bytes, root_certificate: bytes,
                                name: str | None, database_url: str | None) -> None:
    cfg = _load_home_config(home)
    spec = cfg.issuing_named(name)
    try:
        cert = load_certificate(certificate)
        root = load_certificate(root_certificate)
        verify_certificate_signature(cert, root)
    except (X509Error, ValueError) as exc:
        raise CAError(f"cannot import the issuing CA certificate: {exc}") from None
    except CryptoError as exc:  # InvalidSignature, an unsupported or malformed key
        raise CAError(f"the issuing CA certificate is not signed by the given root: {exc}") \
            from None
    if not cert.ca:
        raise CAError("the certificate to import is not a CA certificate (basicConstraints)")
    engine = storage.make_engine(_database_url(home, cfg, database_url))
    try:
        storage.upgrade(engine)
        with _write(engine) as conn, conn.begin():
            row = conn.execute(select(CARecord).where(CARecord.name == spec.name)).one_or_none()
            if row is None or row.state != "pending":
                raise CAError(f"issuing CA {spec.name} is not waiting for a certificate")
            csr = asn1csr.CertificationRequest.load(row.csr_der)
            if csr["certification_request_info"]["subject_pk_info"].dump() != \
                    cert.public_key.dump():
                raise CAError(f"the certificate's public key is not the key of {spec.name}")
            root_row = conn.execute(select(CARecord).where(
                CARecord.certificate_der == root.dump())).one_or_none()
            if root_row is None:
                root_id = conn.execute(insert(CARecord).values(
                    name=cfg.root.name, role="root", parent_id=None,
                    subject=cfg.root.subject, state="external",
                    key_spec=json.dumps({"type": "none"}), certificate_der=root.dump(),
                    csr_der=None, created_at=utcnow())).inserted_primary_key[0]
            else:
                root_id = root_row.id
            conn.execute(update(CARecord).where(CARecord.id == row.id).values(
                state="active", parent_id=root_id, certificate_der=cert.dump()))
    finally:
        engine.dispose()


def _load_home_config(home: Path) -> HierarchyConfig:
    path = home / CONFIG_FILE
    if not path.exists():
        raise NotInitialised(f"no CA in {home}: run `sscard --home {home} ca init` first")
    return parse_config(path.read_text(encoding="utf-8"), str(path))


class CertificateAuthority:
    """One CA of a hierarchy (an issuing CA by default), backed by its database."""

    #: ``issue_from_csr`` and ``issue_for_public_key`` take a ``claim`` (see there)
    accepts_claim = True

    def __init__(self, home: Path, config: HierarchyConfig, engine: Engine, ca: _CA,
                 passphrase: bytes | None, profiles: dict[str, Profile], *,
                 audit: AuditLog, actor: str | None = None, clock: Clock = utcnow) -> None:
        #: the tamper-evident log every issuance, revocation and CRL is recorded in
        self.audit = audit
        #: who the records name when a call names no one (the CLI's user, a service's name)
        self.actor = actor or local_actor()
        self.clock = clock
        self.home = home
        self.config = config
        self.engine = engine
        self._ca = ca
        self._passphrase = passphrase
        self.profiles = profiles
        self._issuer: Issuer | None = None
        #: concurrent issuances' writes share commits (``enable_group_commit``)
        self.committer: GroupCommit | None = None
        #: where serial numbers come from (tests replace it to force a collision)
        self.serial_source: Callable[[], int] = random_serial

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        home: str | Path,
        config: str | Path | None = None,
        passphrase: bytes | None = None,
        database_url: str | None = None,
        *,
        audit: AuditLog,
        actor: str | None = None,
        clock: Clock = utcnow,
    ) -> CertificateAuthority:
        """``initialise`` then ``open`` the first issuing CA."""
        initialise(home, config, passphrase, database_url=database_url, audit=audit,
                   actor=actor)
        return cls.open(home, passphrase, database_url=database_url, audit=audit, actor=actor,
                        clock=clock)

    @classmethod
    def open(
        cls,
        home: str | Path,
        passphrase: bytes | None = None,
        name: str | None = None,
        database_url: str | None = None,
        *,
        audit: AuditLog,
        actor: str | None = None,
        clock: Clock = utcnow,
    ) -> CertificateAuthority:
        """Open CA ``name`` (default: the first issuing CA of the config) of ``home``; its
        operations are recorded in ``audit`` under ``actor`` (default: the local user)."""
        home = Path(home)
        cfg = _load_home_config(home)
        wanted = name or cfg.issuing[0].name
        engine = storage.make_engine(_database_url(home, cfg, database_url))
        try:
            storage.upgrade(engine)
            with engine.connect() as conn:
                row = conn.execute(select(CARecord).where(CARecord.name == wanted)).one_or_none()
        except OperationalError as exc:
            engine.dispose()
            raise StorageError(f"cannot open the CA database: {exc.orig}") from None
        if row is None:
            engine.dispose()
            raise CAError(f"no CA named {wanted!r} in {home}")
        if row.state == "pending":
            engine.dispose()
            raise CAError(f"CA {wanted} waits for its certificate from the offline root "
                          "(sscard ca import-issuing-cert)")
        try:
            profiles = load_profiles([home / "profiles"])
        except ProfileError:
            engine.dispose()
            raise
        return cls(home, cfg, engine, _read_ca(row), passphrase or _stored_passphrase(home),
                   profiles, audit=audit, actor=actor, clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> CertificateAuthority:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- identity -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._ca.name

    @property
    def database_id(self) -> int:
        """This CA's key in the ``cas`` table (certificates.issuer_id)."""
        return self._ca.id

    @property
    def certificate(self) -> x509.Certificate:
        assert self._ca.certificate_der is not None
        return x509.Certificate.load(self._ca.certificate_der)

    def _spec(self) -> CASpec:
        if self._ca.role == "root":
            return self.config.root
        return self.config.issuing_named(self._ca.name)

    def chain(self) -> list[x509.Certificate]:
        """This CA's certificate first, the root last."""
        out = []
        with self.engine.connect() as conn:
            current: Any = self._ca
            while current is not None:
                out.append(x509.Certificate.load(current.certificate_der))
                if current.parent_id is None:
                    break
                current = conn.execute(select(CARecord).where(
                    CARecord.id == current.parent_id)).one_or_none()
        return out

    def issuer(self) -> Issuer:
        """The signing side of this CA (loads the key on first use)."""
        if self._issuer is None:
            key = load_key(self.home, self._ca.key_spec, self._passphrase, self._ca.name)
            spec = self._spec()
            self._issuer = Issuer(self.certificate, key, spec.crl_url, spec.ocsp_url,
                                  spec.ca_issuers_url)
        return self._issuer

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise ProfileError(f"no profile named {name!r}; available: "
                               + ", ".join(sorted(self.profiles))) from None

    # -- issuance -----------------------------------------------------------------------------

    def issue_from_csr(
        self,
        csr: asn1csr.CertificationRequest | CsrParts | bytes,
        profile: str,
        extra: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        request_id: str | None = None,
        claim: Claim | None = None,
    ) -> IssuedCertificate:
        """Issue from a PKCS#10 request after checking its signature (proof of possession).
        With ``request_id`` (the caller's own id for this request) asking again returns the
        certificate issued the first time: a caller that lost the answer issues nothing twice.

        ``claim``: run in the transaction that stores the certificate (the service records a
        signed request's nonce there, so that the request counts as used exactly when the
        certificate exists); what it raises refuses the issuance."""
        return self._issue_one(profile, actor, "csr",
                               lambda: check_csr(csr, self.profile(profile), extra), claim,
                               self._request_key(actor, request_id))

    def issue_for_public_key(
        self,
        public_key: PublicKey,
        subject: x509.Name | str,
        profile: str,
        extra: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        request_id: str | None = None,
        claim: Claim | None = None,
    ) -> IssuedCertificate:
        """Issue for a key whose possession the (authenticated) caller has established, as the
        KMC does for the encryption keys it generates. ``request_id`` and ``claim``: as for
        :meth:`issue_from_csr`."""
        return self._issue_one(
            profile, actor, "public_key",
            lambda: check_public_key(public_key, subject, self.profile(profile), extra), claim,
            self._request_key(actor, request_id))

    def _request_key(self, actor: str | None, request_id: str | None) -> str | None:
        """The idempotency key of a request: its caller's name and the caller's own id."""
        if request_id is None:
            return None
        if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
            raise RequestRefused("request_id must be 1-128 letters, digits or . _ : - "
                                 f"(got {str(request_id)[:60]!r})")
        return f"{actor or self.actor}/{request_id}"

    def _issue_once(self, approved: Approved, op: Operation, key: str,
                    claim: Claim | None) -> IssuedCertificate:
        earlier = self._issued_for(key, approved)
        if earlier is not None:
            if claim is not None:
                self._run(claim)  # a replayed signed request stays refused
            op.set(repeated=True)
            self._record_serials(op, [serial_to_hex(earlier.serial)])
            return earlier
        try:
            return self._commit([approved], op, claim, [key])[0]
        except _RequestKeyTaken:
            # the same request committed at the same moment by another worker: its answer
            earlier = self._issued_for(key or "", approved)
            assert earlier is not None
            op.set(repeated=True)
            self._record_serials(op, [serial_to_hex(earlier.serial)])
            return earlier

    def _issued_for(self, key: str, approved: Approved) -> IssuedCertificate | None:
        """The certificate issued for the request of idempotency key ``key``, if any; refused
        when that key was used for another request."""
        found = self._issued_for_keys({key: approved}).get(key)
        if found is not None and found.refused is not None:
            raise RequestRefused(found.refused)
        return found.issued if found is not None else None

    def _issued_for_keys(self, approved: Mapping[str, Approved]) -> dict[str, ItemOutcome]:
        """For each idempotency key already used, in one query: the certificate issued for its
        request (``repeated``), or the refusal of a key that was used for another request."""
        if not approved:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(RequestRecord.request_key, RequestRecord.request_der,
                       RequestRecord.profile, CertificateRecord.der, CertificateRecord.serial,
                       CertificateRecord.profile, CertificateRecord.subject)
                .join(CertificateRecord, (CertificateRecord.issuer_id == RequestRecord.issuer_id)
                      & (CertificateRecord.serial == RequestRecord.certificate_serial))
                .where(RequestRecord.request_key.in_(list(approved)))).all()
        out: dict[str, ItemOutcome] = {}
        for row in rows:
            key, request_der, label, der, serial, profile, subject = str(row[0]), *row[1:]
            a = approved[key]
            if (request_der, label, subject) != (a.request_der, a.profile.label,
                                                 a.subject_text):
                why = (f"request id {key.rsplit('/', 1)[-1]!r} was used for another request "
                       "(another key, subject or profile); use a new id")
                out[key] = ItemOutcome(refused=why, error=RequestRefused(why))
            else:
                out[key] = ItemOutcome(IssuedCertificate(int(serial, 16), profile, der),
                                       repeated=True)
        return out

    def enable_group_commit(self) -> GroupCommit:
        """For a served CA whose request threads issue at once: the certificate rows (and, when
        the audit log lives in the CA's database, its records) of concurrent issuances share
        one write transaction and one commit (``sscard.groupcommit``); each caller still gets
        its certificate only after that commit."""
        if self.committer is None:
            self.committer = GroupCommit(self.engine, name=f"ca-{self.name}-group-commit")
            if self._audit_in_database():
                self.audit.enable_group_commit(self.committer)  # one batch for both
            elif self.audit.committer is None:
                self.audit.enable_group_commit()
        return self.committer

    def _audit_in_database(self) -> bool:
        """Whether the audit log's tables are in the CA's own database (then an issuance's
        records and its certificate row go in one transaction)."""
        return bool(self.audit.engine.url == self.engine.url)

    def _run(self, work: Callable[[Connection], T]) -> T:
        """``work`` in a write transaction of the CA's database: the group commit's when there
        is one, else a transaction of its own. Returns once committed."""
        if self.committer is not None:
            return self.committer.run(work)
        with _write(self.engine) as conn, conn.begin():
            return work(conn)

    def _issue_one(self, profile: str, actor: str | None, kind: str,
                   check: Callable[[], Approved], claim: Claim | None,
                   key: str | None = None) -> IssuedCertificate:
        """One issuance, recorded in the audit log: 'attempt' and outcome.

        With the audit log in the CA's database, both records are written in the transaction
        that stores the certificate (no record, no certificate, and the other way round: the
        certificate exists only once its row is committed, and that commit is the records'),
        after the request is checked and signed, so that the database is locked only for the
        writes. Elsewhere, the attempt is recorded first, as ``AuditLog.operation`` does."""
        if not self._audit_in_database():
            with self._issuing(profile, actor, kind) as op:
                approved = check()
                op.set(subject=approved.subject_text[:300])
                if key is not None:
                    return self._issue_once(approved, op, key, claim)
                return self._commit([approved], op, claim)[0]
        who = actor or self.actor
        obj = f"profile:{profile}"
        attempt = {"ca": self.name, "request": kind}
        if key is not None:
            # with an idempotency key (the RA's): the lookup of an earlier answer, then the
            # certificate and both records in one transaction, as a batch of one
            attempt["request_id"] = key.rsplit("/", 1)[-1]
            try:
                outcome, = self._issue_entries([_Entry(check, key, attempt)], who, obj, claim)
            except AuditUnavailable:
                raise
            except BaseException as exc:
                self._record_unsuccessful(who, obj, attempt, exc)
                raise
            if outcome.error is not None:
                raise outcome.error
            assert outcome.issued is not None
            return outcome.issued
        try:
            approved = check()
            issued, due = self._commit_recorded(approved, who, obj, attempt, claim)
        except AuditUnavailable:
            raise  # nothing was written: no record, no certificate
        except BaseException as exc:
            self._record_unsuccessful(who, obj, attempt, exc)
            raise
        self.audit.after_commit(due)
        metrics.ISSUED.labels(self.name, approved.profile.name).inc()
        return issued

    def _record_unsuccessful(self, actor: str, obj: str, attempt: dict[str, Any],
                             exc: BaseException) -> None:
        """The attempt and its outcome when ``exc`` stopped it: 'denied' with the reason for
        a refusal, else 'failure' with the kind of error."""
        refused = isinstance(exc, _REFUSALS)
        why = {"reason": str(exc)[:500]} if refused else {"error": type(exc).__name__}
        self._record_outcome(actor, obj, attempt, "denied" if refused else "failure", why)

    def _record_outcome(self, actor: str, obj: str, attempt: dict[str, Any], outcome: str,
                        details: dict[str, Any]) -> None:
        """An attempt and its (unsuccessful) outcome, in one transaction."""
        action = AuditAction.CA_CERTIFICATE_ISSUE
        try:
            records = [self.audit.record(actor, action, obj, "attempt", "", attempt),
                       self.audit.record(actor, action, obj, outcome, "", details)]
            _, due = self._run(lambda conn: self.audit.append_in(conn, records,
                                                                 link_outcome=True))
        except (AuditError, SQLAlchemyError, GroupCommitError, LookupError) as exc:
            log.error("audit records of a %s issuance not written: %s", outcome, exc)
            return
        self.audit.after_commit(due)

    def _commit_recorded(self, approved: Approved, actor: str, obj: str,
                         attempt: dict[str, Any], claim: Claim | None
                         ) -> tuple[IssuedCertificate, bool]:
        """Sign, then store the certificate and its audit records in one transaction."""
        issuer = self.issuer()
        action = AuditAction.CA_CERTIFICATE_ISSUE
        for tries in range(SERIAL_RETRIES):
            now = self.clock()
            serial = self.serial_source()
            der = sign_certificate(issuer, approved, serial, now)
            cert_row, request_row = self._rows(issuer, approved, serial, der, now)
            records = [
                self.audit.record(actor, action, obj, "attempt", "", attempt),
                self.audit.record(actor, action, obj, "success", "", {
                    "subject": approved.subject_text[:300], "serials": [cert_row["serial"]]}),
            ]

            def store(conn: Connection) -> tuple[list[StoredRecord], bool]:
                if claim is not None:
                    claim(conn)
                _INSERT_CERTIFICATE(conn, cert_row)  # noqa: B023 (run now)
                _INSERT_REQUEST(conn, request_row)  # noqa: B023
                return self.audit.append_in(conn, records, link_outcome=True)  # noqa: B023

            try:
                _, due = self._run(store)
            except IntegrityError as exc:
                if not _is_serial_clash(exc):
                    raise AuditUnavailable("the certificate and its audit records could not "
                                           f"be stored: {exc.orig}") from None
                if tries == SERIAL_RETRIES - 1:
                    raise StorageError("could not store the certificates: serial numbers "
                                       f"collided {SERIAL_RETRIES} times") from None
                continue
            except (SQLAlchemyError, GroupCommitError, LookupError) as exc:
                raise AuditUnavailable("the certificate and its audit records could not be "
                                       f"stored: {exc}") from exc
            return IssuedCertificate(serial, approved.profile.name, der), due
        raise StorageError("could not draw distinct serial numbers")

    def _rows(self, issuer: Issuer, approved: Approved, serial: int, der: bytes,
              now: dt.datetime, key: str | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The certificate's row and its request's row."""
        nb, na = validity_of(issuer, approved, now)
        hex_serial = serial_to_hex(serial)
        return ({"issuer_id": self._ca.id, "serial": hex_serial, "profile": approved.profile.name,
                 "subject": approved.subject_text, "not_before": nb, "not_after": na,
                 "issued_at": now, "der": der, "status": Status.GOOD},
                {"issuer_id": self._ca.id, "kind": approved.kind,
                 "profile": approved.profile.label, "request_der": approved.request_der,
                 "certificate_serial": hex_serial, "received_at": now, "request_key": key})

    def _issuing(self, profile: str, actor: str | None,
                 kind: str) -> contextlib.AbstractContextManager[Operation]:
        """An issuance under the audit log; the outcome names the serials (``_commit``)."""
        return _audited(self.audit, actor or self.actor, AuditAction.CA_CERTIFICATE_ISSUE,
                        f"profile:{profile}", ca=self.name, request=kind)

    def issue_batch(
        self, requests: Iterable[IssueRequest], profile: str, chunk_size: int = 200, *,
        actor: str | None = None,
    ) -> list[IssuedCertificate]:
        """Issue many; each chunk is one transaction, committed before its certificates are
        returned. A refused request stops the batch before its chunk is signed (earlier chunks
        stay committed). The audit log gets one operation for the batch (profile, count) and
        the serials of what was issued."""
        with self._issuing(profile, actor, "batch") as op:
            issued = self._issue_batch(requests, profile, chunk_size, op)
            op.set(count=len(issued))
        return issued

    def _issue_batch(self, requests: Iterable[IssueRequest], profile: str,
                     chunk_size: int, op: Operation) -> list[IssuedCertificate]:
        prof = self.profile(profile)
        out: list[IssuedCertificate] = []
        chunk: list[Approved] = []
        for i, req in enumerate(requests):
            try:
                if req.csr is not None:
                    chunk.append(check_csr(req.csr, prof, req.extra))
                elif req.public_key is not None and req.subject is not None:
                    chunk.append(check_public_key(req.public_key, req.subject, prof, req.extra))
                else:
                    raise RequestRefused("a request needs a CSR, or a public key and a subject")
            except RequestRefused as exc:
                raise RequestRefused(f"batch entry {i}: {exc}") from None
            if len(chunk) >= chunk_size:
                out.extend(self._commit(chunk, op))
                chunk = []
        if chunk:
            out.extend(self._commit(chunk, op))
        return out

    def issue_each(self, requests: Sequence[IssueRequest], profile: str, *,
                   actor: str | None = None, claim: Claim | None = None
                   ) -> list[ItemOutcome]:
        """Issue many requests, each on its own account (the HTTP API's batch): every entry is
        checked, recorded in the audit log (its attempt and its outcome) and answered alone, a
        refused one without touching the others; an entry with a ``request_id`` issued before
        gets that certificate again. With the audit log in the CA's database, all
        certificates, request rows and audit records are written in one transaction, committed
        (with ``claim``) before any is returned; elsewhere each entry is an issuance of its own
        (attempt recorded first, as ``issue_from_csr`` does), after ``claim``."""
        if not requests:
            raise RequestRefused("a batch needs at least one request")
        who = actor or self.actor
        if not self._audit_in_database():
            return self._issue_each_apart(requests, profile, who, claim)
        try:
            prof = self.profile(profile)
        except ProfileError as exc:
            self._record_outcome(who, f"profile:{profile}", {"ca": self.name,
                                 "request": "batch", "count": len(requests)}, "denied",
                                 {"reason": str(exc)[:500]})
            raise
        entries = [self._entry(req, prof, who, i) for i, req in enumerate(requests)]
        return self._issue_entries(entries, who, f"profile:{prof.name}", claim, batch=True)

    def _issue_each_apart(self, requests: Sequence[IssueRequest], profile: str, who: str,
                          claim: Claim | None) -> list[ItemOutcome]:
        """``issue_each`` when the audit log is in another database: one audited issuance per
        entry (no transaction can hold both the records and the certificates)."""
        if claim is not None:
            self._run(claim)
        outcomes = []
        for i, req in enumerate(requests):
            try:
                with _audited(self.audit, who, AuditAction.CA_CERTIFICATE_ISSUE,
                              f"profile:{profile}", ca=self.name, item=i,
                              request="csr" if req.csr is not None else "public_key") as op:
                    key = self._request_key(who, req.request_id)
                    approved = self._check(req, self.profile(profile))
                    op.set(subject=approved.subject_text[:300])
                    issued = (self._issue_once(approved, op, key, None) if key is not None
                              else self._commit([approved], op)[0])
                outcomes.append(ItemOutcome(issued, repeated=bool(op.details.get("repeated"))))
            except _REFUSALS as exc:
                outcomes.append(ItemOutcome(refused=str(exc)[:500], error=exc))
        return outcomes

    def _entry(self, req: IssueRequest, prof: Profile, who: str, item: int) -> _Entry:
        attempt: dict[str, Any] = {"ca": self.name, "request": "csr" if req.csr is not None
                                   else "public_key", "item": item}
        if req.attested_key is not None:
            attempt["possession"] = "attested"
        if req.request_id is not None:
            attempt["request_id"] = str(req.request_id)[:128]
        try:
            key = self._request_key(who, req.request_id)
        except RequestRefused as exc:
            refusal = exc

            def refuse() -> Approved:
                raise refusal

            return _Entry(refuse, None, attempt)
        return _Entry(lambda: self._check(req, prof), key, attempt)

    def _issue_entries(self, entries: Sequence[_Entry], who: str, obj: str,
                       claim: Claim | None, *, batch: bool = False) -> list[ItemOutcome]:
        """``_issue_entries_once``, again with fresh serials if one was taken meanwhile, or
        with the earlier answer if another worker stored the same request id first."""
        for tries in range(SERIAL_RETRIES):
            try:
                return self._issue_entries_once(entries, who, obj, claim, batch)
            except _Retry:
                if tries == SERIAL_RETRIES - 1:
                    raise StorageError("could not store the certificates: serial numbers or "
                                       f"request ids collided {SERIAL_RETRIES} times") from None
        raise AssertionError("unreachable")

    def _issue_entries_once(self, entries: Sequence[_Entry], who: str, obj: str,
                            claim: Claim | None, batch: bool) -> list[ItemOutcome]:
        """Check each entry, look up the request ids used before (one query), sign the rest,
        then store certificates, request rows and their audit records in one transaction (with
        ``claim``): for a ``batch``, one attempt and outcome records listing the items
        (``_batch_records``), else an attempt and an outcome per entry."""
        outcomes: list[ItemOutcome | None] = [None] * len(entries)
        approved: dict[int, Approved] = {}
        keys: dict[int, str] = {}
        for i, entry in enumerate(entries):
            try:
                if entry.key is not None:
                    if entry.key in keys.values():
                        raise RequestRefused(f"request id {entry.key.rsplit('/', 1)[-1]!r} is "
                                             "given twice")
                    keys[i] = entry.key
                approved[i] = entry.check()
            except _REFUSALS as exc:
                outcomes[i] = ItemOutcome(refused=str(exc)[:500], error=exc)
        earlier = self._issued_for_keys({keys[i]: a for i, a in approved.items() if i in keys})
        for i in list(approved):
            found = earlier.get(keys.get(i, ""))
            if found is not None:
                del approved[i]
                outcomes[i] = found
        issuer = self.issuer()
        now = self.clock()
        fresh = {i: self.serial_source() for i in approved}
        ders = {i: sign_certificate(issuer, a, fresh[i], now) for i, a in approved.items()}
        rows = {i: self._rows(issuer, a, fresh[i], ders[i], now, keys.get(i))
                for i, a in approved.items()}
        for i, a in approved.items():
            outcomes[i] = ItemOutcome(IssuedCertificate(fresh[i], a.profile.name, ders[i]))
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(entries)
        records = (self._batch_records(who, obj, entries, approved, done) if batch
                   else self._entry_records(who, obj, entries, approved, done))

        answered = any(o.issued is not None for o in done)

        def store(conn: Connection) -> tuple[list[StoredRecord], bool]:
            if claim is not None and answered:  # a refused request is claimed by its caller
                claim(conn)
            if rows:
                _INSERT_CERTIFICATE(conn, [c for c, _ in rows.values()])
                _INSERT_REQUEST(conn, [r for _, r in rows.values()])
            return self.audit.append_in(conn, records, link_outcome=not batch,
                                        one_attempt=batch)

        try:
            _, due = self._run(store)
        except IntegrityError as exc:
            if _is_serial_clash(exc) or _is_request_key_clash(exc):
                raise _Retry() from None  # another worker stored one of the ids first
            raise AuditUnavailable("the certificates and their audit records could not be "
                                   f"stored: {exc.orig}") from None
        except (SQLAlchemyError, GroupCommitError, LookupError) as exc:
            raise AuditUnavailable("the certificates and their audit records could not be "
                                   f"stored: {exc}") from exc
        self.audit.after_commit(due)
        for a in approved.values():
            metrics.ISSUED.labels(self.name, a.profile.name).inc()
        return done

    def _check(self, req: IssueRequest, prof: Profile) -> Approved:
        if req.unreadable is not None:
            raise RequestRefused(req.unreadable)
        if req.csr is not None:
            return check_csr(req.csr, prof, req.extra, attested_key=req.attested_key)
        if req.public_key is not None and req.subject is not None:
            return check_public_key(req.public_key, req.subject, prof, req.extra)
        raise RequestRefused("a request needs a CSR, or a public key and a subject")

    def _entry_records(self, who: str, obj: str, entries: Sequence[_Entry],
                       approved: Mapping[int, Approved], outcomes: Sequence[ItemOutcome]
                       ) -> list[Any]:
        """An attempt and an outcome record per entry (``append_in(link_outcome=True)``)."""
        action = AuditAction.CA_CERTIFICATE_ISSUE
        records = []
        for i, (entry, outcome) in enumerate(zip(entries, outcomes, strict=True)):
            records.append(self.audit.record(who, action, obj, "attempt", "", entry.attempt))
            if outcome.issued is None:
                records.append(self.audit.record(who, action, obj, "denied", "",
                                                 {"reason": outcome.refused or ""}))
                continue
            details: dict[str, Any] = {"serials": [outcome.issued.serial_hex]}
            if i in approved:
                details["subject"] = approved[i].subject_text[:300]
            if outcome.repeated:
                details["repeated"] = True
            records.append(self.audit.record(who, action, obj, "success", "", details))
        return records

    def _batch_records(self, who: str, obj: str, entries: Sequence[_Entry],
                       approved: Mapping[int, Approved], outcomes: Sequence[ItemOutcome]
                       ) -> list[AuditRecord]:
        """A batch's audit records (``append_in(one_attempt=True)``): one attempt (CA, count,
        possession attested, the items' request ids), then 'success' records listing the
        issued items (index, serial, subject, request id, ``repeated``) and 'denied' records
        listing the refused ones (index, request id, reason), as many items per record as
        its details hold. They are written in the certificates' own transaction, so a record
        per item would add no durability, only hashing and rows."""
        action = AuditAction.CA_CERTIFICATE_ISSUE
        attempt: dict[str, Any] = {"ca": self.name, "request": "batch", "count": len(entries)}
        attested = sum(e.attempt.get("possession") == "attested" for e in entries)
        if attested:
            attempt["possession_attested"] = attested
        ids = [e.attempt.get("request_id") for e in entries]
        if any(i is not None for i in ids):
            first = fitting_chunks(ids, MAX_DETAILS_BYTES, first_room=MAX_DETAILS_BYTES
                                   - _LIST_OVERHEAD - details_size(attempt))[0]
            attempt["request_ids"] = first
            if len(first) < len(ids):  # the rest are named with their items' outcomes
                attempt["request_ids_cut"] = len(ids) - len(first)
        issued: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        for i, (entry, outcome) in enumerate(zip(entries, outcomes, strict=True)):
            item: dict[str, Any] = {"item": i}
            if "request_id" in entry.attempt:
                item["request_id"] = entry.attempt["request_id"]
            if outcome.issued is None:
                item["reason"] = outcome.refused or ""
                refused.append(item)
                continue
            item["serial"] = outcome.issued.serial_hex
            if i in approved:
                item["subject"] = approved[i].subject_text[:300]
            if outcome.repeated:
                item["repeated"] = True
            issued.append(item)
        records = [self.audit.record(who, action, obj, "attempt", "", attempt)]
        for name, items in (("success", issued), ("denied", refused)):
            records.extend(self._listing_records(who, obj, name, items))
        return records

    def _listing_records(self, who: str, obj: str, outcome: str,
                         items: list[dict[str, Any]]) -> list[AuditRecord]:
        """Records listing ``items``: one when they fit (a batch's usually do), its details
        encoded once, else as many as ``fitting_chunks`` makes (the whole record, cut to a
        summary by ``AuditRecord.bounded``, would lose the items)."""
        if not items:
            return []
        action = AuditAction.CA_CERTIFICATE_ISSUE
        room = MAX_DETAILS_BYTES - _LIST_OVERHEAD
        whole = self.audit.record(who, action, obj, outcome, "", {"items": items})
        if ("details_cut" not in whole.details
                and len(whole.details_json().encode("utf-8")) <= room + len('{"items":}')):
            return [whole]
        return [self.audit.record(who, action, obj, outcome, "", {"items": chunk})
                for chunk in fitting_chunks(items, room)]

    def _record_serials(self, op: Operation, serials: list[str]) -> None:
        """Name the issued serials in the issuance's audit records: in its outcome record while
        they fit, the rest in 'info' records linked to its attempt."""
        listed: list[str] = list(op.details.get("serials", []))
        room = MAX_DETAILS_BYTES - _LIST_OVERHEAD
        first, *rest = fitting_chunks(serials, room,
                                      first_room=room - details_size(op.details))
        op.set(serials=listed + first)
        for chunk in rest:
            self.audit.append(self.actor, AuditAction.CA_CERTIFICATE_ISSUE, f"ca:{self.name}",
                              "info", details={"attempt_seq": op.attempt_seq,
                                               "serials": chunk})

    def _commit(self, approved: Sequence[Approved], op: Operation,
                claim: Claim | None = None,
                keys: Sequence[str | None] | None = None) -> list[IssuedCertificate]:
        issuer = self.issuer()
        request_keys = list(keys) if keys is not None else [None] * len(approved)
        for attempt in range(SERIAL_RETRIES):
            now = self.clock()
            serials = [self.serial_source() for _ in approved]
            if len(set(serials)) != len(serials):
                continue
            ders = [sign_certificate(issuer, a, s, now) for a, s in zip(approved, serials,
                                                                          strict=True)]
            rows = [self._rows(issuer, a, s, der, now, key)
                    for a, s, der, key in zip(approved, serials, ders, request_keys,
                                              strict=True)]

            def store(conn: Connection) -> None:
                if claim is not None:
                    claim(conn)
                _INSERT_CERTIFICATE(conn, [c for c, _ in rows])  # noqa: B023
                _INSERT_REQUEST(conn, [r for _, r in rows])  # noqa: B023

            try:
                self._run(store)
            except GroupCommitError as exc:
                raise StorageError(f"could not store the certificates: {exc}") from None
            except IntegrityError as exc:
                if _is_request_key_clash(exc):
                    raise _RequestKeyTaken() from None
                if not _is_serial_clash(exc):
                    raise StorageError(f"could not store the certificates: {exc.orig}") \
                        from None
                if attempt == SERIAL_RETRIES - 1:
                    raise StorageError("could not store the certificates: serial numbers "
                                       f"collided {SERIAL_RETRIES} times") from None
                continue
            # committed: only now are the certificates handed out, and recorded as issued
            self._record_serials(op, [serial_to_hex(s) for s in serials])
            for a in approved:
                metrics.ISSUED.labels(self.name, a.profile.name).inc()
            return [IssuedCertificate(s, a.profile.name, d)
                    for a, s, d in zip(approved, serials, ders, strict=True)]
        raise StorageError("could not draw distinct serial numbers")

    # -- revocation and status ----------------------------------------------------------------

    def revoke(
        self,
        serial: int,
        reason: RevocationReason | str = RevocationReason.unspecified,
        invalidity_date: dt.datetime | None = None,
        *,
        actor: str | None = None,
    ) -> CertificateStatus:
        """Revoke with an RFC 5280 reason and optional invalidity date (when the key was
        known or suspected compromised). Unknown serials and second revocations are refused.
        Recorded in the audit log (``ca.certificate.revoke``), refusals included."""
        try:
            why = RevocationReason.parse(reason)
        except ValueError as exc:
            raise RequestRefused(str(exc)) from None
        with _audited(self.audit, actor or self.actor, AuditAction.CA_CERTIFICATE_REVOKE,
                      f"serial:{serial_to_hex(serial)}", ca=self.name, reason=why.name,
                      invalidity_date=invalidity_date.isoformat() if invalidity_date else None):
            return self._revoke(serial, why, invalidity_date)

    def _revoke(self, serial: int, why: RevocationReason,
                invalidity_date: dt.datetime | None) -> CertificateStatus:
        if why is RevocationReason.removeFromCRL:
            raise RequestRefused("removeFromCRL is not a revocation reason (it only appears in "
                                 "delta CRLs to release a certificateHold)")
        now = self.clock().replace(microsecond=0)
        if invalidity_date is not None:
            if invalidity_date.tzinfo is None:
                raise RequestRefused("the invalidity date needs a time zone")
            if invalidity_date > now:
                raise RequestRefused("the invalidity date cannot be in the future")
            invalidity_date = invalidity_date.astimezone(dt.UTC).replace(microsecond=0)
        hex_serial = serial_to_hex(serial)
        with _write(self.engine) as conn, conn.begin():
            row = self._row(conn, hex_serial)
            held = RevocationReason.certificateHold.value
            if row.status is Status.REVOKED and row.revocation_reason == held and \
                    why is not RevocationReason.certificateHold:
                # RFC 5280 §5.3.1: a held certificate may be revoked for good later; it keeps
                # its original revocation date and takes the final reason
                conn.execute(update(CertificateRecord).where(
                    CertificateRecord.id == row.id).values(
                    revocation_reason=why.value,
                    invalidity_date=invalidity_date or row.invalidity_date))
                self._bump_revocation_generation(conn)
                return CertificateStatus(serial, Status.REVOKED, row.revoked_at, why,
                                         invalidity_date or row.invalidity_date,
                                         row.der)
            if row.status is Status.REVOKED:
                raise AlreadyRevoked(
                    f"certificate {hex_serial} of CA {self.name} is already revoked "
                    f"(since {row.revoked_at:%Y-%m-%d %H:%M:%SZ}, reason "
                    f"{RevocationReason(row.revocation_reason or 0).name})")
            done = conn.execute(update(CertificateRecord).where(
                CertificateRecord.id == row.id, CertificateRecord.status == Status.GOOD).values(
                status=Status.REVOKED, revoked_at=now, revocation_reason=why.value,
                invalidity_date=invalidity_date))
            if done.rowcount != 1:
                raise AlreadyRevoked(f"certificate {hex_serial} was revoked concurrently")
            self._bump_revocation_generation(conn)
        metrics.REVOKED.labels(self.name, why.name).inc()
        return CertificateStatus(serial, Status.REVOKED, now, why, invalidity_date, row.der)

    def _bump_revocation_generation(self, conn: Connection) -> None:
        conn.execute(update(CARecord).where(CARecord.id == self._ca.id).values(
            revocation_generation=CARecord.revocation_generation + 1))

    def revocation_generation(self) -> int:
        """A number that changes with every revocation by this CA, a hold made final included;
        other processes' caches (the OCSP workers) poll it. One primary-key read."""
        with self.engine.connect() as conn:
            return int(conn.execute(_SELECT_GENERATION, {"ca_id": self._ca.id}).scalar_one())

    def _row(self, conn: Connection, hex_serial: str) -> Any:
        row = conn.execute(_SELECT_CERTIFICATE,
                           {"issuer_id": self._ca.id, "serial": hex_serial}).one_or_none()
        if row is None:
            raise UnknownCertificate(f"serial {hex_serial} was never issued by CA {self.name}")
        return row

    def status(self, serial: int) -> CertificateStatus:
        """good, revoked (time, reason, invalidity date) or unknown: what OCSP answers."""
        with self.engine.connect() as conn:
            try:
                row = self._row(conn, serial_to_hex(serial))
            except UnknownCertificate:
                return CertificateStatus(serial, Status.UNKNOWN)
        return _status_of(row)

    def show(self, serial: int) -> CertificateStatus:
        """Like ``status``, but an unknown serial is an error."""
        with self.engine.connect() as conn:
            return _status_of(self._row(conn, serial_to_hex(serial)))

    def certificate_profile(self, serial: int) -> str | None:
        """The profile a certificate was issued under (None for a serial never issued)."""
        with self.engine.connect() as conn:
            return conn.execute(select(CertificateRecord.profile).where(
                CertificateRecord.issuer_id == self._ca.id,
                CertificateRecord.serial == serial_to_hex(serial))).scalar_one_or_none()

    def list_certificates(self, limit: int = 100, offset: int = 0) -> list[
            tuple[CertificateStatus, str, str]]:
        """(status, profile, subject) of issued certificates, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(CertificateRecord).where(
                CertificateRecord.issuer_id == self._ca.id).order_by(
                CertificateRecord.id.desc()).limit(limit).offset(offset)).all()
        return [(_status_of(r), r.profile, r.subject) for r in rows]

    # -- CRLs ---------------------------------------------------------------------------------

    def build_crl(self, delta: bool = False, now: dt.datetime | None = None) -> \
            asn1crl.CertificateList:
        """Sign and record the next full or delta CRL (CRL numbers strictly increase, shared
        by full and delta CRLs as RFC 5280 §5.2.3 asks)."""
        return asn1crl.CertificateList.load(self.build_crl_der(delta, now))

    def build_crl_der(self, delta: bool = False, now: dt.datetime | None = None, *,
                      actor: str | None = None) -> bytes:
        """``build_crl``, DER-encoded; recorded in the audit log (``ca.crl.issue``)."""
        with _audited(self.audit, actor or self.actor, AuditAction.CA_CRL_ISSUE,
                      f"ca:{self.name}", delta=delta) as op:
            der, number = self._build_crl_der(delta, now)
            op.set(crl_number=number)
        return der

    def _build_crl_der(self, delta: bool, now: dt.datetime | None) -> tuple[bytes, int]:
        issuer = self.issuer()
        spec = self._spec()
        for attempt in range(5):
            this_update = (now or self.clock()).astimezone(dt.UTC).replace(microsecond=0)
            hours = spec.delta_crl_hours if delta else spec.crl_hours
            next_update = this_update + dt.timedelta(hours=hours)
            with self.engine.connect() as conn:
                last = conn.execute(select(func.max(CRLRecord.number)).where(
                    CRLRecord.issuer_id == self._ca.id)).scalar_one()
                number = (last or 0) + 1
                base_number = None
                query = select(CertificateRecord.serial, CertificateRecord.revoked_at,
                               CertificateRecord.revocation_reason,
                               CertificateRecord.invalidity_date).where(
                    CertificateRecord.issuer_id == self._ca.id,
                    CertificateRecord.status == Status.REVOKED)
                if delta:
                    base = conn.execute(select(CRLRecord).where(
                        CRLRecord.issuer_id == self._ca.id, CRLRecord.is_delta.is_(False)
                    ).order_by(CRLRecord.number.desc()).limit(1)).one_or_none()
                    if base is None:
                        raise CAError(f"CA {self.name} has no full CRL yet to be the base of a "
                                      "delta CRL: build a full CRL first")
                    base_number = base.number
                    query = query.where(
                        CertificateRecord.revoked_at >= base.this_update - DELTA_OVERLAP)
                # rows straight from the DBAPI cursor: no Row objects or type conversion per
                # row (encode_rows reads SQLite's datetime text itself); millions of rows
                cursor = conn.execute(query.order_by(CertificateRecord.revoked_at)).cursor
                parts = []
                while chunk := cursor.fetchmany(50_000):
                    parts.append(encode_rows(chunk))
                entries = b"".join(parts)
            # A root's CRL carries no issuing distribution point: the root's own certificate
            # has no CRL distribution point to match it, and relying parties that check the
            # whole chain (openssl -crl_check_all) then reject the CRL as "different scope".
            idp = None if self._ca.role == "root" else spec.crl_url
            der = build_crl(issuer, entries, number, this_update, next_update, base_number, idp,
                            spec.delta_crl_url)
            try:
                with _write(self.engine) as conn, conn.begin():
                    conn.execute(insert(CRLRecord).values(
                        issuer_id=self._ca.id, number=number, is_delta=delta,
                        base_number=base_number, this_update=this_update,
                        next_update=next_update, der=der))
            except IntegrityError:
                if attempt == 4:
                    raise StorageError("CRL number kept colliding with concurrent builds") \
                        from None
                continue
            return der, number
        raise StorageError("unreachable")

    def latest_crl_der(self, delta: bool = False) -> bytes | None:
        """The newest recorded full (or delta) CRL, for download endpoints."""
        with self.engine.connect() as conn:
            return conn.execute(select(CRLRecord.der).where(
                CRLRecord.issuer_id == self._ca.id, CRLRecord.is_delta.is_(delta)).order_by(
                CRLRecord.number.desc()).limit(1)).scalar_one_or_none()

    def refresh_crls(self, now: dt.datetime | None = None) -> list[bytes]:
        """For a scheduler: build a full CRL when none exists or the newest is past half its
        validity, and a delta CRL likewise. Returns what it built."""
        now = now or self.clock()
        built: list[bytes] = []
        for delta in (False, True):
            with self.engine.connect() as conn:
                last = conn.execute(select(CRLRecord).where(
                    CRLRecord.issuer_id == self._ca.id, CRLRecord.is_delta.is_(delta)).order_by(
                    CRLRecord.number.desc()).limit(1)).one_or_none()
            if last is not None:
                start, end = last.this_update, last.next_update
                if now < start + (end - start) / 2 and not (delta and built):
                    continue
            built.append(self.build_crl_der(delta, now))
        return built

    # -- service signers ----------------------------------------------------------------------

    def ocsp_signer(self) -> Signer:
        """The delegated OCSP responder key and certificate, created on first use."""
        return self._service_signer("ocsp-signer", "OCSP Responder")

    def tsa_signer(self) -> Signer:
        """The time-stamping key and certificate (critical EKU timeStamping), made on first use."""
        return self._service_signer("tsa", "Time Stamping Authority")

    def _service_signer(self, profile: str, title: str) -> Signer:
        if self._passphrase is None:
            raise CAError("a passphrase is needed for the service keys")
        margin = self.clock() + dt.timedelta(days=1)
        key_dir = self.home / "ca" / "keys"
        with self.engine.connect() as conn:
            rows = conn.execute(select(CertificateRecord).where(
                CertificateRecord.issuer_id == self._ca.id,
                CertificateRecord.profile == profile,
                CertificateRecord.status == Status.GOOD).order_by(
                CertificateRecord.id.desc())).all()
        for row in rows:
            path = key_dir / f"{profile}-{self.name}-{row.serial}.key.pem"
            if row.not_after > margin and path.exists():
                key = SoftwareKey.load(path, self._passphrase)
                return Signer(key, x509.Certificate.load(row.der), tuple(self.chain()))
        key = SoftwareKey.generate(self.issuer().key.algorithm, label=f"ca:{profile}")
        ca_subject = self.certificate.subject
        parts = [f"CN={name_attribute(ca_subject, 'common_name') or self.name} {title}"]
        for attr, short in (("organization_name", "O"), ("country_name", "C")):
            value = name_attribute(ca_subject, attr)
            if value:
                parts.append(f"{short}={value}")
        issued = self.issue_for_public_key(key.public_key(), ",".join(parts), profile)
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key.store(key_dir / f"{profile}-{self.name}-{issued.serial_hex}.key.pem",
                  self._passphrase)
        return Signer(key, issued.certificate, tuple(self.chain()))


class _RequestKeyTaken(Exception):
    """Another worker committed the request of the same idempotency key first."""


class _Retry(Exception):
    """A batch's transaction met a serial or request id stored meanwhile: sign it again."""


def _is_request_key_clash(exc: IntegrityError) -> bool:
    return "uq_requests_request_key" in str(exc.orig) or "requests.request_key" in str(exc.orig)


def _is_serial_clash(exc: IntegrityError) -> bool:
    """The unique (issuer, serial) constraint, as SQLite or PostgreSQL words it."""
    text = str(exc.orig)
    return "uq_certificates_issuer_serial" in text or "certificates.serial" in text


def _status_of(row: Any) -> CertificateStatus:
    if row.status is Status.REVOKED:
        return CertificateStatus(
            Serial.parse(row.serial), Status.REVOKED, row.revoked_at,
            RevocationReason(row.revocation_reason or 0), row.invalidity_date, row.der)
    return CertificateStatus(Serial.parse(row.serial), Status.GOOD, certificate_der=row.der)
