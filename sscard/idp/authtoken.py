"""Card login tokens: what the browser agent returns and how the provider validates it.

The model is Web eID's (web-eid-authtoken-validation): the card signs ``H(origin) || H(nonce)``
so a token is worth nothing on another site (the origin) or a second time (the nonce, one-time
and short-lived, held server-side). The provider then checks the certificate to the cardholder
CA with revocation and the cardholder profile, and only then the signature.

Which certificate authenticates: the card's PKI application holds a signing key pair and an
encryption key pair (CARD_SPEC §4). Only the signing key signs (PSO COMPUTE DIGITAL SIGNATURE
after the PIN), and its certificate is of the ``cardholder-sign`` profile (ca/profiles:
policy 1.2.156.10260.4.2.1.1, keyUsage digitalSignature + nonRepudiation). That certificate
authenticates: it carries digitalSignature. A certificate without digitalSignature (the
``cardholder-encrypt`` certificate, or a non-repudiation-only signing certificate some CAs issue
for qualified signatures) or without the cardholder signing policy is refused with
``WRONG_CERTIFICATE``.

The signed data, for ``SM2-SM3``: ``SM3(origin) || SM3(nonce)`` (UTF-8), signed with SM2 and
the GM/T 0009 default user ID, as the card's PSO signs e = SM3(Z || M); for ``ES256``:
``SHA-256(origin) || SHA-256(nonce)`` signed with ECDSA P-256 / SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from asn1crypto import x509

from sscard.cms.identity import identify
from sscard.cms.verify import TrustConfig
from sscard.crypto.algorithms import KeyAlgorithm, SignatureAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError
from sscard.gateway.config import CARDHOLDER_SIGN_POLICY
from sscard.gateway.profiles import cardholder_problems
from sscard.gateway.revocation import AnchoredVerifier
from sscard.idp.tokenformat import (
    ALGORITHMS,
    FORMAT,
    MAX_ORIGIN,
    TokenError,
    is_origin,
    signed_data,
)
from sscard.sqlschema import UTCDateTime, create_all_concurrently, make_engine
from sscard.validation import ReasonCode

MAX_FIELD = 16 * 1024  # a certificate or signature in base64; a card's cert file is 2 KiB


def _b64(data: Mapping[str, object], name: str) -> bytes:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise TokenError("TOKEN_MALFORMED", f"'{name}' must be a non-empty base64 string")
    if len(value) > MAX_FIELD:
        raise TokenError("TOKEN_MALFORMED", f"'{name}' is longer than {MAX_FIELD} characters")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TokenError("TOKEN_MALFORMED", f"'{name}' is not valid base64") from None


@dataclass(frozen=True)
class AuthToken:
    certificate: bytes
    """DER of the card's certificate that signed."""
    algorithm: str
    signature: bytes
    """DER ECDSA / SM2 signature."""
    origin: str
    format: str = FORMAT

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> AuthToken:
        if not isinstance(data, Mapping):
            raise TokenError("TOKEN_MALFORMED", "the token must be a JSON object")
        if data.get("format") != FORMAT:
            raise TokenError("TOKEN_MALFORMED", f"'format' must be {FORMAT!r}")
        algorithm = data.get("algorithm")
        if algorithm not in ALGORITHMS:
            raise TokenError("TOKEN_MALFORMED",
                             f"'algorithm' must be one of {', '.join(ALGORITHMS)}")
        origin = data.get("origin")
        if not isinstance(origin, str) or len(origin) > MAX_ORIGIN or not is_origin(origin):
            raise TokenError("TOKEN_MALFORMED",
                             "'origin' must be a web origin such as https://rp.example:8443")
        certificate = _b64(data, "certificate")
        try:
            cert = x509.Certificate.load(certificate, strict=True)
            cert.public_key.dump()  # parse the key now, not half-way through validation
            _ = cert.subject, cert.key_usage_value, cert.certificate_policies_value
        except (ValueError, TypeError, KeyError, IndexError, OverflowError):
            raise TokenError("TOKEN_MALFORMED", "'certificate' is not a DER certificate") from None
        signature = _b64(data, "signature")
        assert isinstance(algorithm, str)
        return cls(certificate, algorithm, signature, origin)

    def to_json(self) -> dict[str, str]:
        return {"format": self.format, "algorithm": self.algorithm, "origin": self.origin,
                "certificate": base64.b64encode(self.certificate).decode(),
                "signature": base64.b64encode(self.signature).decode()}


@dataclass(frozen=True)
class CardholderIdentity:
    name: str
    ssn: str
    card_number: str | None
    """Not in the certificate: the issuer's registry's word for this certificate
    (``TokenValidator(card_numbers=...)``, sscard.idp.card_numbers), else None, never
    guessed."""
    certificate_sha256: str
    certificate_der: bytes


# -- one-time nonces ----------------------------------------------------------------------

_metadata = sa.MetaData()
_nonces = sa.Table(
    "idp_nonces", _metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("used", sa.Boolean, nullable=False, default=False),
)
_KEEP_USED = timedelta(hours=1)
"""Used and expired nonces are kept this long past expiry (a late replay says NONCE_USED or
NONCE_EXPIRED rather than NONCE_UNKNOWN), then purged when new ones are issued."""


_boot = sa.Table(
    "idp_nonce_boot", _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("boot_id", sa.String(64), nullable=False),
)
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_id(source: Path = BOOT_ID_FILE) -> str | None:
    """The running kernel's boot id (new on every boot: after a power failure or an OS crash),
    or None where there is none (not Linux)."""
    try:
        return source.read_text().strip() or None
    except OSError:
        return None


class NonceStore:
    """Login nonces in one SQL table (SQLite file or PostgreSQL), shared by every worker: the
    one-time rule is an atomic ``UPDATE ... WHERE used = false``.

    Why a consumption is not fsynced on SQLite (measured: the fsync was two thirds of a token
    validation, bench/login.py): the store's connections run WAL with ``synchronous=NORMAL``.
    A commit is then in the WAL file in the OS's page cache: every worker sees it at once and
    it survives any process crash or restart; only a power failure or an OS crash can lose the
    last commits, so a consumed nonce could come back unused. Every such event starts a new
    boot, so the store remembers the boot id it last ran under and, at the first start in a new
    boot, marks every nonce issued before it used (``_forget_earlier_boots``): what a power
    failure can lose is never accepted afterwards. A login in flight at the failure has to be
    started again, nothing more. Where there is no boot id (not Linux) commits stay
    ``synchronous=FULL``. PostgreSQL keeps its durable commits (a crash of the database server
    is not seen in this machine's boot id).
    """

    def __init__(self, url: str, clock: Callable[[], datetime] | None = None, *,
                 boot: Callable[[], str | None] = boot_id) -> None:
        self.engine = make_engine(url, immediate=True)
        self.clock = clock or (lambda: datetime.now(UTC))
        current_boot = boot() if self.engine.dialect.name == "sqlite" else None
        if current_boot is not None:
            # registered after make_engine's listener, so it overrides its synchronous=FULL
            sa.event.listen(self.engine.pool, "connect", _synchronous_normal)
        create_all_concurrently(_metadata, self.engine)
        if current_boot is not None:
            self._forget_earlier_boots(current_boot)

    def _forget_earlier_boots(self, current: str) -> None:
        """At the first start after a boot, no nonce from before it is good any more (its
        consumption may have been lost with the page cache). One transaction under the write
        lock: of workers starting together, the first does it, the others find it done. Should
        this commit itself be lost, the next boot's id differs again and it is redone."""
        with self.engine.begin() as conn:
            seen = conn.execute(sa.select(_boot.c.boot_id).where(_boot.c.id == 1)).scalar()
            if seen == current:
                return
            conn.execute(_nonces.update().where(_nonces.c.used.is_(False)).values(used=True))
            if seen is None:
                conn.execute(_boot.insert().values(id=1, boot_id=current))
            else:
                conn.execute(_boot.update().where(_boot.c.id == 1).values(boot_id=current))

    def issue(self, seconds: int = 300) -> str:
        if not 1 <= seconds <= 3600:
            raise ValueError("a login nonce lives between 1 second and 1 hour")
        nonce = secrets.token_urlsafe(32)  # 32 random bytes, 43 characters
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(_nonces.delete().where(_nonces.c.expires_at < now - _KEEP_USED))
            conn.execute(_nonces.insert().values(
                nonce=nonce, expires_at=now + timedelta(seconds=seconds), used=False))
        return nonce

    def consume(self, nonce: str) -> None:
        """Use ``nonce`` up, or raise; the first answer consumes it, right or wrong."""
        if not isinstance(nonce, str) or not 1 <= len(nonce) <= 64:
            raise TokenError("NONCE_UNKNOWN", "no such login nonce")
        with self.engine.begin() as conn:
            # one statement on the way that succeeds; the reason is looked up only on refusal
            row = conn.execute(_nonces.update().where(
                (_nonces.c.nonce == nonce) & _nonces.c.used.is_(False)).values(used=True)
                .returning(_nonces.c.expires_at)).one_or_none()
            known = row is not None or conn.execute(sa.select(_nonces.c.nonce).where(
                _nonces.c.nonce == nonce)).one_or_none() is not None
        if not known:
            raise TokenError("NONCE_UNKNOWN", "no such login nonce; start the login again")
        if row is None:
            raise TokenError("NONCE_USED", "the login nonce was already used (a replayed token)")
        if self.clock() > row.expires_at:
            raise TokenError("NONCE_EXPIRED",
                             f"the login nonce expired at {row.expires_at.isoformat()}; "
                             "start the login again")


def _synchronous_normal(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


# -- validation ---------------------------------------------------------------------------

_PATH_CODES = {ReasonCode.REVOKED: "CERTIFICATE_REVOKED",
               ReasonCode.EXPIRED: "CERTIFICATE_EXPIRED",
               ReasonCode.NOT_YET_VALID: "CERTIFICATE_EXPIRED",
               ReasonCode.REVOCATION_UNKNOWN: "REVOCATION_UNKNOWN",
               ReasonCode.UNTRUSTED_ROOT: "CERTIFICATE_UNTRUSTED"}
_KEY_ALGORITHMS = {"SM2-SM3": (KeyAlgorithm.SM2, SignatureAlgorithm.SM2_SM3),
                   "ES256": (KeyAlgorithm.EC_P256, SignatureAlgorithm.ECDSA_SHA256)}


class TokenValidator:
    """Validates login tokens against the cardholder CA (``trust``: anchors, intermediates and
    revocation sources as the gateway's verifier takes them; ``trust.cache_seconds`` keeps
    path and revocation answers warm) and consumes their nonces from ``nonces``. ``clock``,
    when given, is also when the card certificate's own validity is judged (tests move it);
    the path and revocation are always checked live."""

    def __init__(self, trust: TrustConfig, clock: Callable[[], datetime] | None = None, *,
                 nonces: NonceStore,
                 cardholder_policies: Collection[str] = frozenset({CARDHOLDER_SIGN_POLICY}),
                 card_numbers: Callable[[x509.Certificate], str | None] | None = None,
                 ) -> None:
        self.verifier = AnchoredVerifier(trust)
        #: asked only for a certificate that passed every check (sscard.idp.card_numbers)
        self.card_numbers = card_numbers
        self.clock = clock
        self.nonces = nonces
        self.policies = frozenset(cardholder_policies)
        # what depends on a certificate's bytes alone is worked out once per certificate (a
        # cardholder logs in with the same one for years; parsing it, its key and its profile
        # was a third of a validation, bench/login.py); the path and revocation are not cached
        # here but by the verifier, for trust.cache_seconds
        self._examined = functools.lru_cache(maxsize=4096)(self._examine)

    def _examine(self, der: bytes) -> _Examined:
        cert = x509.Certificate.load(der)
        problems = cardholder_problems(cert, self.policies)
        usages = set(cert.key_usage_value.native) if cert.key_usage_value is not None else set()
        if "digital_signature" not in usages:
            problems.append("its key usage lacks digitalSignature: not the card's "
                            "authentication (signing) certificate")
        who = identify(cert)
        if not problems and (not who.common_name or not who.social_insurance_number):
            problems.append("the certificate names no holder or social insurance number")
        return _Examined(cert, PublicKey.from_spki(cert.public_key.dump()), tuple(problems),
                         who.common_name or "", who.social_insurance_number or "",
                         hashlib.sha256(der).hexdigest())

    def validate(self, token: AuthToken, expected_origin: str, nonce: str) -> CardholderIdentity:
        if token.origin != expected_origin:
            raise TokenError("ORIGIN_MISMATCH",
                             f"the token was made for {token.origin}, not {expected_origin}")
        self.nonces.consume(nonce)
        examined = self._examined(token.certificate)
        cert = examined.cert
        if self.clock is not None:
            now = self.clock()
            validity = cert["tbs_certificate"]["validity"]
            if not validity["not_before"].native <= now <= validity["not_after"].native:
                raise TokenError("CERTIFICATE_EXPIRED",
                                 f"the certificate is valid from {validity['not_before'].native}"
                                 f" to {validity['not_after'].native}, not at {now}")
        # the path and its revocation are checked live (at None): a fixed time computed before
        # fetching would call a just-signed OCSP answer "too recent"
        result = self.verifier.validate(cert, [], None, with_revocation=True)
        if not result.valid:
            first = result.reasons[0]
            raise TokenError(_PATH_CODES.get(first.code, "CERTIFICATE_INVALID"),
                             "; ".join(r.message for r in result.reasons))
        if examined.problems:
            raise TokenError("WRONG_CERTIFICATE", "; ".join(examined.problems))
        key = examined.key
        key_algorithm, signature_algorithm = _KEY_ALGORITHMS[token.algorithm]
        if key.algorithm is not key_algorithm:
            raise TokenError("SIGNATURE_INVALID",
                             f"{token.algorithm} does not fit the certificate's "
                             f"{key.algorithm.value} key")
        try:
            key.verify(token.signature, signed_data(token.algorithm, token.origin, nonce),
                       signature_algorithm)
        except (CryptoError, ValueError):
            raise TokenError("SIGNATURE_INVALID",
                             "the signature does not verify with the certificate's key for "
                             "this origin and nonce") from None
        card_number = self.card_numbers(cert) if self.card_numbers is not None else None
        return CardholderIdentity(
            name=examined.name, ssn=examined.ssn, card_number=card_number,
            certificate_sha256=examined.sha256, certificate_der=token.certificate)


@dataclass(frozen=True)
class _Examined:
    """What a certificate's bytes alone say, for ``TokenValidator``."""

    cert: x509.Certificate
    key: PublicKey
    problems: tuple[str, ...]
    name: str
    ssn: str
    sha256: str
