"""Verifying CMS SignedData: the signature, the signed attributes, the path to the configured
trust anchors, revocation (OCSP, falling back to CRLs) and the time-stamp.

The answer names the signer and lists every reason the signature is not valid, each with a
stable code (``Code``). With a valid time-stamp token the signer's certificate is judged at the
time-stamp's time: a certificate revoked *after* it still vouches for the signature (a note
says so), one revoked before it does not.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from asn1crypto import cms, core, crl, ocsp, x509

from sscard.cms.content_types import normalise
from sscard.cms.errors import CmsParseError
from sscard.cms.identity import SignerIdentity, identify
from sscard.cms.parse import load_content_info
from sscard.cms.revocation import RevocationFetch, gather
from sscard.cms.signer_check import (
    attribute,
    check_signer_info,
    has_signed_attributes,
    signer_matches,
)
from sscard.cms.timestamp import check_token
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError
from sscard.crypto.sm2 import DEFAULT_UID
from sscard.validation import (
    Purpose,
    Reason,
    ReasonCode,
    RevocationMode,
    ValidationResult,
    validate_path,
)


class Code(enum.Enum):
    """Why a signature is not valid (and notes that do not make it invalid)."""

    CONTENT_CHANGED = "CONTENT_CHANGED"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    BAD_SIGNED_ATTRIBUTES = "BAD_SIGNED_ATTRIBUTES"
    UNKNOWN_SIGNER = "UNKNOWN_SIGNER"
    WRONG_SIGNER = "WRONG_SIGNER"
    NO_CONTENT = "NO_CONTENT"
    NO_SIGNER = "NO_SIGNER"
    UNSUPPORTED_ALGORITHM = "UNSUPPORTED_ALGORITHM"
    UNTRUSTED_ROOT = "UNTRUSTED_ROOT"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    REVOKED = "REVOKED"
    REVOCATION_UNKNOWN = "REVOCATION_UNKNOWN"
    BAD_CERTIFICATE_SIGNATURE = "BAD_CERTIFICATE_SIGNATURE"
    WRONG_PURPOSE = "WRONG_PURPOSE"
    INVALID_PATH = "INVALID_PATH"
    TIMESTAMP_INVALID = "TIMESTAMP_INVALID"
    TIMESTAMP_MISMATCH = "TIMESTAMP_MISMATCH"
    TIMESTAMP_UNTRUSTED = "TIMESTAMP_UNTRUSTED"
    # notes: do not make the signature invalid
    REVOKED_AFTER_TIMESTAMP = "REVOKED_AFTER_TIMESTAMP"
    REVOCATION_NOT_CHECKED = "REVOCATION_NOT_CHECKED"
    REVOCATION_SOURCE_FAILED = "REVOCATION_SOURCE_FAILED"


@dataclass(frozen=True)
class Problem:
    code: Code
    message: str
    at: datetime | None = None
    """For REVOKED and REVOKED_AFTER_TIMESTAMP: when the certificate was revoked."""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code.value, "message": self.message}
        if self.at is not None:
            out["at"] = self.at.isoformat()
        return out

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


@dataclass(frozen=True)
class SignatureReport:
    """The verdict on one signer of a SignedData."""

    valid: bool
    signer: SignerIdentity | None
    problems: tuple[Problem, ...]
    notes: tuple[Problem, ...] = ()
    signing_time: datetime | None = None
    """The signer's own claim (signing-time attribute): not evidence of anything."""
    timestamp_time: datetime | None = None
    """The time-stamp token's genTime, when a valid token was present."""
    content: bytes | None = field(default=None, repr=False)
    """The signed content (the encapsulated content, or the detached content given)."""
    revocation_checked: bool = False
    """Whether the signer's certificate was checked for revocation at all; when not, a
    REVOCATION_NOT_CHECKED note says so (VALID then means: valid unless revoked)."""

    @property
    def codes(self) -> frozenset[Code]:
        return frozenset(p.code for p in self.problems)

    def to_json(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "signer": self.signer.to_json() if self.signer else None,
            "reasons": [p.to_json() for p in self.problems],
            "notes": [p.to_json() for p in self.notes],
            "signing_time": self.signing_time.isoformat() if self.signing_time else None,
            "timestamp_time": self.timestamp_time.isoformat() if self.timestamp_time else None,
        }


_PATH_CODES = {
    ReasonCode.EXPIRED: Code.EXPIRED,
    ReasonCode.NOT_YET_VALID: Code.NOT_YET_VALID,
    ReasonCode.UNTRUSTED_ROOT: Code.UNTRUSTED_ROOT,
    ReasonCode.BAD_SIGNATURE: Code.BAD_CERTIFICATE_SIGNATURE,
    ReasonCode.REVOKED: Code.REVOKED,
    ReasonCode.REVOCATION_UNKNOWN: Code.REVOCATION_UNKNOWN,
    ReasonCode.WRONG_PURPOSE: Code.WRONG_PURPOSE,
    ReasonCode.KEY_USAGE: Code.WRONG_PURPOSE,
}


def _path_problem(reason: Reason, who: str) -> Problem:
    code = _PATH_CODES.get(reason.code, Code.INVALID_PATH)
    if code is Code.REVOKED and reason.revocation_time is not None:
        when = reason.revocation_time
        why = f" ({reason.revocation_reason})" if reason.revocation_reason else ""
        return Problem(code, f"{who} was revoked at {when.isoformat()}{why}", when)
    return Problem(code, f"{who}: {reason.message}")


@dataclass(frozen=True)
class _KnownCertificate:
    cert: x509.Certificate
    public_key: PublicKey
    identity: SignerIdentity


@dataclass(frozen=True)
class _Parsed:
    inner_type: str
    embedded: bytes | None
    certificates: list[_KnownCertificate]
    signer_info: cms.SignerInfo | None


_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                 UnicodeDecodeError, RecursionError)

RevocationSource = Callable[[], tuple[Sequence[crl.CertificateList], Sequence[ocsp.OCSPResponse]]]


@dataclass
class TrustConfig:
    """What a verifier trusts and where it gets revocation information."""

    trust_anchors: Sequence[x509.Certificate]
    intermediates: Sequence[x509.Certificate] = ()
    crls: Sequence[crl.CertificateList] = ()
    ocsp_responses: Sequence[ocsp.OCSPResponse] = ()
    revocation_source: RevocationSource | None = None
    """Called on each (uncached) validation for fresh CRLs and OCSP responses."""
    revocation_fetch: RevocationFetch | None = None
    """The one fetch setting: ask the OCSP responders and CRL distribution points of the
    signer's path (or the operator's responder) over HTTP, only under this allow-list and
    sscard.fetch's bounds (no redirects, timeouts, size caps, a request budget). None: nothing
    is fetched."""
    revocation: RevocationMode | None = None
    """Default: REQUIRE when any revocation source is configured, else NONE."""
    cache_seconds: float = 0.0
    """Path validation results are reused this long (0: no cache)."""


class Verifier:
    """Verifies SignedData against one TrustConfig; thread-safe, with an optional cache of path
    validation results keyed by the certificates and the validation time."""

    def __init__(self, config: TrustConfig) -> None:
        if not config.trust_anchors:
            raise ValueError("a verifier needs at least one trust anchor")
        self.config = config
        self._cache: dict[tuple[object, ...],
                          tuple[float, ValidationResult, tuple[str, ...]]] = {}
        self._certificates: dict[bytes, _KnownCertificate] = {}
        self._lock = threading.Lock()
        # encoded once: asn1crypto re-encodes a certificate built in memory on every dump
        self._intermediates = [self._known(c.dump()) for c in config.intermediates]

    # -- path validation -----------------------------------------------------------------

    def _revinfo(self) -> tuple[list[crl.CertificateList], list[ocsp.OCSPResponse]]:
        crls = list(self.config.crls)
        ocsps = list(self.config.ocsp_responses)
        if self.config.revocation_source is not None:
            more_crls, more_ocsp = self.config.revocation_source()
            crls.extend(more_crls)
            ocsps.extend(more_ocsp)
        return crls, ocsps

    def _revocation_mode(self, has_revinfo: bool) -> RevocationMode:
        if self.config.revocation is not None:
            return self.config.revocation
        configured = has_revinfo or (self.config.revocation_source is not None) or (
            self.config.revocation_fetch is not None)
        return RevocationMode.REQUIRE if configured else RevocationMode.NONE

    def validate(
        self,
        leaf: x509.Certificate,
        extra: Sequence[x509.Certificate],
        at: datetime | None,
        with_revocation: bool,
        purpose: Purpose | None = None,
        use_cache: bool = True,
    ) -> ValidationResult:
        """Validate ``leaf`` (with ``extra`` candidate CA certificates) at ``at`` (None: now);
        ``use_cache=False`` for answers that must reflect a revocation at once."""
        return self._validate(leaf, extra, at, with_revocation, purpose, use_cache)[0]

    def _validate(
        self,
        leaf: x509.Certificate,
        extra: Sequence[x509.Certificate],
        at: datetime | None,
        with_revocation: bool,
        purpose: Purpose | None = None,
        use_cache: bool = True,
    ) -> tuple[ValidationResult, tuple[str, ...]]:
        """``validate``, and the revocation sources that could not be used (fetching)."""
        key = (
            hashlib.sha256(leaf.dump()).digest(),
            tuple(hashlib.sha256(c.dump()).digest() for c in extra),
            at.replace(microsecond=0) if at else None,
            with_revocation,
            purpose,
        )
        ttl = self.config.cache_seconds if use_cache else 0.0
        if ttl > 0:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1], hit[2]
        crls, ocsps = self._revinfo() if with_revocation else ([], [])
        failures: tuple[str, ...] = ()
        fetch = self.config.revocation_fetch
        if with_revocation and fetch is not None:
            # the path first (no revocation), then what its certificates' sources say
            path = validate_path(
                leaf, trust_anchors=self.config.trust_anchors,
                intermediates=[*self.config.intermediates, *extra],
                revocation=RevocationMode.NONE, at=at, purpose=purpose).path
            got = gather(path, fetch)
            crls.extend(got.crls)
            ocsps.extend(got.ocsp_responses)
            failures = tuple(got.failures)
        mode = self._revocation_mode(bool(crls or ocsps)) if with_revocation else (
            RevocationMode.NONE)
        result = validate_path(
            leaf,
            trust_anchors=self.config.trust_anchors,
            intermediates=[*self.config.intermediates, *extra],
            crls=crls,
            ocsp_responses=ocsps,
            revocation=mode,
            at=at,
            purpose=purpose,
        )
        if ttl > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (time.monotonic() + ttl, result, failures)
        return result, failures

    # -- the signature -------------------------------------------------------------------

    def verify(
        self,
        signed: bytes | cms.ContentInfo,
        content: bytes | None = None,
        *,
        at: datetime | None = None,
        expected_signer: x509.Certificate | None = None,
        uid: bytes = DEFAULT_UID,
    ) -> SignatureReport:
        """Verify the first signer of ``signed`` (DER/PEM or parsed); ``content`` for a
        detached signature. Malformed input raises CmsParseError; everything else is an
        answer with reasons."""
        parsed = self._parse(signed)
        embedded = parsed.embedded
        given_differs = content is not None and embedded is not None and content != embedded
        # the signature is checked over what it carries; a different document given is reported
        data = embedded if embedded is not None else content
        signer_info = parsed.signer_info
        if signer_info is None:
            return SignatureReport(False, None, (Problem(Code.NO_SIGNER, "no SignerInfo"),),
                                   content=data)
        if data is None:
            return SignatureReport(False, None, (Problem(
                Code.NO_CONTENT,
                "detached signature: the signed content must be given to verify it"),))
        known = [*parsed.certificates, *self._intermediates]
        with _as_parse_error("SignerInfo"):
            sid = signer_info["sid"]
            found = next((k for k in known if signer_matches(sid, k.cert)), None)
        if found is None:
            return SignatureReport(False, None, (Problem(
                Code.UNKNOWN_SIGNER,
                "the signer's certificate is neither in the message nor known here"),),
                content=data)
        cert = found.cert
        certs = [k.cert for k in parsed.certificates]
        inner_type = parsed.inner_type
        identity = found.identity
        with _as_parse_error("SignerInfo"):
            problems: list[Problem] = [
                Problem(Code(code), msg)
                for code, msg in check_signer_info(signer_info, cert, data, inner_type, uid=uid,
                                                   public_key=found.public_key)
            ]
            st = attribute(signer_info["signed_attrs"], "signing_time") if (
                has_signed_attributes(signer_info)) else None
            signing_time = st.native if st is not None else None  # type: ignore[attr-defined]
        if given_differs:
            problems.append(Problem(
                Code.CONTENT_CHANGED,
                "the document given differs from the content inside the signature"))
        if expected_signer is not None and expected_signer.dump() != cert.dump():
            problems.append(Problem(
                Code.WRONG_SIGNER,
                f"signed by {identity.subject}, not by the expected "
                f"{expected_signer.subject.human_friendly}"))

        extra = [c for c in certs if c is not cert]
        notes: list[Problem] = []
        with _as_parse_error("time-stamp token"):
            ts_time = self._timestamp(signer_info, problems)
        reference = ts_time or at
        who = f"the signer's certificate ({identity.subject})"
        if ts_time is None:
            result, failures = self._validate(cert, extra, at, with_revocation=True)
            problems.extend(_path_problem(r, who) for r in result.reasons)
            revocation_checked = result.revocation_checked
        else:
            at_stamp = self.validate(cert, extra, reference, with_revocation=False)
            problems.extend(_path_problem(r, who) for r in at_stamp.reasons)
            now, failures = self._validate(cert, extra, at, with_revocation=True)
            now_codes = now.codes
            if ReasonCode.EXPIRED in now_codes and not now_codes & {
                    ReasonCode.REVOKED, ReasonCode.REVOCATION_UNKNOWN}:
                # expired since: the validator stops at the expiry and checks no revocation,
                # so ask again at the time-stamp's time (a revocation before it still counts)
                now, failures = self._validate(cert, extra, ts_time, with_revocation=True)
            revocation_checked = now.revocation_checked
            for r in now.reasons:
                if r.code is ReasonCode.REVOKED:
                    when = r.revocation_time
                    if when is not None and when > ts_time:
                        notes.append(Problem(
                            Code.REVOKED_AFTER_TIMESTAMP,
                            f"{who} was revoked at {when.isoformat()}, after the time-stamp "
                            f"at {ts_time.isoformat()}: the signature was made while valid",
                            when))
                    else:
                        stamp = ts_time.isoformat()
                        problems.append(Problem(
                            Code.REVOKED,
                            f"{who} was revoked at {when.isoformat() if when else '?'}, "
                            f"before the time-stamp at {stamp}", when))
                elif r.code is ReasonCode.REVOCATION_UNKNOWN:
                    problems.append(_path_problem(r, who))
        notes.extend(Problem(Code.REVOCATION_SOURCE_FAILED, f) for f in failures)
        if not revocation_checked:
            notes.append(Problem(
                Code.REVOCATION_NOT_CHECKED,
                f"{who} was not checked for revocation: no CRL, OCSP answer or source to fetch"
                " them from was configured"))
        return SignatureReport(
            valid=not problems,
            signer=identity,
            problems=tuple(_dedupe(problems)),
            notes=tuple(notes),
            signing_time=signing_time,
            timestamp_time=ts_time,
            content=data,
            revocation_checked=revocation_checked,
        )

    def _known(self, der: bytes) -> _KnownCertificate:
        """A certificate parsed once, with its public key and the identity it names."""
        with self._lock:
            hit = self._certificates.get(der)
        if hit is not None:
            return hit
        try:
            cert = x509.Certificate.load(der, strict=True)
            cert.native  # noqa: B018  (force the full parse: malformed input fails here)
            known = _KnownCertificate(cert, PublicKey.from_spki(cert.public_key.dump()),
                                      identify(cert))
        except (*_PARSE_ERRORS, CryptoError) as exc:
            raise CmsParseError(f"a certificate in the message is malformed: {exc}") from None
        with self._lock:
            if len(self._certificates) > 10_000:
                self._certificates.clear()
            self._certificates[der] = known
        return known

    def _parse(self, signed: bytes | cms.ContentInfo) -> _Parsed:
        """The parts of a SignedData that verification needs; CmsParseError if malformed
        (asn1crypto parses lazily, so every access that can fail is inside)."""
        info = signed if isinstance(signed, cms.ContentInfo) else load_content_info(
            signed, deep=False)
        try:
            kind = info["content_type"].native
            if normalise(kind) != "signed_data":
                raise CmsParseError(f"expected SignedData, found {kind}")
            sd = info["content"]
            encap = sd["encap_content_info"]
            inner_type = encap["content_type"].native
            embedded_value = encap["content"]
            # bytes() joins the chunks of a constructed (BER) OCTET STRING
            embedded = None if isinstance(embedded_value, core.Void) else bytes(embedded_value)
            cert_ders = [c.chosen.dump() for c in sd["certificates"] or ()
                         if c.name == "certificate"]
            signer_infos = sd["signer_infos"]
            signer_info = signer_infos[0] if len(signer_infos) else None
        except CmsParseError:
            raise
        except _PARSE_ERRORS as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CmsParseError(f"malformed SignedData: {msg}") from None
        return _Parsed(inner_type, embedded, [self._known(d) for d in cert_ders], signer_info)

    def _timestamp(self, signer_info: cms.SignerInfo, problems: list[Problem]) -> datetime | None:
        """The genTime of a valid time-stamp token on this signer, else None (problems added
        for a token that is present but not good)."""
        unsigned = signer_info["unsigned_attrs"]
        if unsigned.native is None:
            return None
        token = attribute(unsigned, "signature_time_stamp_token")
        if token is None:
            return None
        check = check_token(token, signer_info["signature"].native)
        bad = [Problem(Code(code), msg) for code, msg in check.findings]
        if not bad and check.tsa_certificate is not None and check.gen_time is not None:
            tsa = check.tsa_certificate
            others = [c for c in check.certificates if c.dump() != tsa.dump()]
            result = self.validate(tsa, others, check.gen_time, with_revocation=False)
            for r in result.reasons:
                bad.append(Problem(Code.TIMESTAMP_UNTRUSTED,
                                   f"the time-stamp authority's certificate: {r.message}"))
            if not bad:
                # a TSA key revoked before the token's time cannot vouch for it
                for r in self.validate(tsa, others, None, with_revocation=True).reasons:
                    if r.code is ReasonCode.REVOKED and (
                            r.revocation_time is None or r.revocation_time <= check.gen_time):
                        bad.append(Problem(
                            Code.TIMESTAMP_UNTRUSTED,
                            "the time-stamp authority's certificate was revoked at "
                            f"{r.revocation_time}, before the token's time", r.revocation_time))
            eku = tsa.extended_key_usage_value
            if eku is None or "time_stamping" not in eku.native:
                bad.append(Problem(Code.TIMESTAMP_UNTRUSTED,
                                   "the time-stamp certificate is not for time-stamping"))
        problems.extend(bad)
        if bad:
            return None
        return check.gen_time.astimezone(UTC) if check.gen_time else None


@contextlib.contextmanager
def _as_parse_error(what: str) -> Iterator[None]:
    """asn1crypto parses lazily: malformed parts surface on first access, as these errors."""
    try:
        yield
    except _PARSE_ERRORS as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CmsParseError(f"malformed {what}: {msg}") from None


def _dedupe(problems: Iterable[Problem]) -> list[Problem]:
    seen: set[tuple[Code, str]] = set()
    out = []
    for p in problems:
        if (p.code, p.message) not in seen:
            seen.add((p.code, p.message))
            out.append(p)
    return out


def verify(
    signed: bytes,
    trust_anchors: Sequence[x509.Certificate],
    content: bytes | None = None,
    **config: object,
) -> SignatureReport:
    """One-shot verification: ``Verifier(TrustConfig(trust_anchors, **config)).verify(...)``."""
    return Verifier(TrustConfig(trust_anchors, **config)).verify(signed, content)  # type: ignore[arg-type]
