"""RFC 5280 §6 path validation on top of pyhanko-certvalidator.

pyhanko-certvalidator does path building, basic path processing, policies (RFC 9618 graph),
name constraints, and CRL (with delta CRLs and indirect CRLs) and OCSP checking; this module
configures it (SM2-aware signatures, revocation rules, algorithm policy), maps its exceptions to
:class:`ReasonCode`\\ s, and adds the purpose and host-name checks on the leaf.
"""

from __future__ import annotations

import enum
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from asn1crypto import algos, core, crl, keys, ocsp, x509
from pyhanko_certvalidator import PKIXValidationParams, ValidationContext
from pyhanko_certvalidator import errors as pv
from pyhanko_certvalidator.authority import CertTrustAnchor, TrustQualifiers
from pyhanko_certvalidator.fetchers.api import FetcherBackend
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    NO_REVOCATION,
    REQUIRE_REVINFO,
    AlgorithmUsageConstraint,
    CertRevTrustPolicy,
    DisallowWeakAlgorithmsPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.validate import async_validate_path

from sscard.validation.adjust_pyhanko import adjust_pyhanko
from sscard.validation.building import (
    Budget,
    BudgetExhausted,
    PathBuilder,
    fingerprint,
    name_key,
    self_issued,
)
from sscard.validation.classify import reason_from_exception
from sscard.validation.errors import ValidationInputError
from sscard.validation.memo import (
    BoundedCache,
    encoding,
    encoding_key,
    fresh_copy,
    handed_back,
    one_validation_each,
    private_copy,
    within_validation,
)
from sscard.validation.names import NameConstraintState, NameConstraintViolation, name_text
from sscard.validation.profile import (
    Position,
    certificate_problems,
    crl_problems,
    describe,
    key_weakness,
)
from sscard.validation.result import Reason, ReasonCode, ValidationResult
from sscard.validation.running import run
from sscard.validation.signatures import SM2AwareSignatureValidator, install_as_pyhanko_default
from sscard.validation.usage import Purpose, check_hostname, check_purpose

install_as_pyhanko_default()

ANY_POLICY = "2.5.29.32.0"
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_FETCH_TIMEOUT_SECONDS = 10


def _any_url_fetcher() -> FetcherBackend:
    """pyhanko's own fetchers (any URL, with a timeout), for callers that give none; loaded
    only then, as they bring requests."""
    from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

    return RequestsFetcherBackend(per_request_timeout=_FETCH_TIMEOUT_SECONDS)


class RevocationMode(enum.Enum):
    """How much revocation information the caller insists on."""

    REQUIRE = "require"
    """Every certificate below the trust anchor needs a valid CRL or OCSP answer."""
    LEAF = "leaf"
    """The end-entity certificate needs a valid CRL or OCSP answer; a CA certificate's status
    is used when the information at hand covers it (a CA revoked by a CRL given is REVOKED),
    but not required, even when the CA names a source. What a relying party holding only the
    leaf's CRL or OCSP answer can ask for (OpenSSL's -crl_check, against -crl_check_all)."""
    IF_DECLARED = "if-declared"
    """Check certificates that name a CRL distribution point or OCSP responder; one that
    names a source whose answer cannot be had fails."""
    NONE = "none"
    """Do not check revocation."""


_REVOCATION_POLICIES: dict[RevocationMode, RevocationCheckingPolicy] = {
    RevocationMode.REQUIRE: REQUIRE_REVINFO,
    RevocationMode.LEAF: RevocationCheckingPolicy(
        # soft for CAs: no answer about the CA is no failure, a matching CRL or OCSP answer
        # that says revoked (or cannot be validated) still is
        RevocationCheckingRule.CRL_OR_OCSP_REQUIRED, RevocationCheckingRule.CHECK_IF_DECLARED_SOFT
    ),
    RevocationMode.IF_DECLARED: RevocationCheckingPolicy(
        RevocationCheckingRule.CHECK_IF_DECLARED, RevocationCheckingRule.CHECK_IF_DECLARED
    ),
    RevocationMode.NONE: NO_REVOCATION,
}


class _RememberingAlgorithmPolicy(DisallowWeakAlgorithmsPolicy):
    """pyhanko's weak-algorithm rules, with each verdict kept by what it depends on (the
    algorithm identifier's and the key's encodings; this policy ignores the time): pyhanko asks
    for every signature of every validation, and builds asn1crypto values to answer."""

    def __init__(self, **thresholds: Any) -> None:
        super().__init__(**thresholds)
        self._verdicts: BoundedCache[tuple[bytes, bytes | None], AlgorithmUsageConstraint] = (
            BoundedCache(1024))

    def signature_algorithm_allowed(
        self, algo: algos.SignedDigestAlgorithm, moment: datetime | None,
        public_key: keys.PublicKeyInfo | None,
    ) -> AlgorithmUsageConstraint:
        key = (encoding(algo), None if public_key is None else encoding(public_key))
        return self._verdicts.get_or_make(key, lambda: super(
            _RememberingAlgorithmPolicy, self).signature_algorithm_allowed(
                algo, moment, public_key))


# SHA-1 and 1024-bit RSA/DSA: only for old data such as NIST PKITS (2011).
_LEGACY_ALGORITHMS = _RememberingAlgorithmPolicy(
    weak_hash_algos=frozenset({"md2", "md5"}),
    rsa_key_size_threshold=1024,
    dsa_key_size_threshold=1024,
)
_STRONG_ALGORITHMS = _RememberingAlgorithmPolicy(
    weak_hash_algos=frozenset({"md2", "md5", "sha1"}),
    rsa_key_size_threshold=2048,
    dsa_key_size_threshold=2048,
)


def _algorithm_policy(allow_legacy: bool) -> DisallowWeakAlgorithmsPolicy:
    return _LEGACY_ALGORITHMS if allow_legacy else _STRONG_ALGORITHMS


def _policy_set(policies: Iterable[str] | None) -> frozenset[str]:
    if policies is None:
        return frozenset({"any_policy"})
    names = set()
    for oid in policies:
        if not isinstance(oid, str) or not _OID.match(oid):
            raise ValidationInputError(f"not a policy OID in dotted form: {oid!r}")
        names.add(x509.PolicyIdentifier(oid).native)
    if not names:
        raise ValidationInputError("the initial policy set is empty; no path could satisfy it")
    return frozenset(names)


def _dotted_policy(name: str) -> str:
    return str(x509.PolicyIdentifier(name).dotted)


def _check_types(
    leaf: object,
    trust_anchors: Sequence[object],
    intermediates: Sequence[object],
    crls: Sequence[object],
    ocsp_responses: Sequence[object],
) -> None:
    if not isinstance(leaf, x509.Certificate):
        raise ValidationInputError(f"leaf must be an asn1crypto Certificate, not {type(leaf)}")
    if not trust_anchors:
        raise ValidationInputError("at least one trust anchor is needed")
    for what, items, kind in (
        ("trust anchor", trust_anchors, x509.Certificate),
        ("intermediate", intermediates, x509.Certificate),
        ("CRL", crls, crl.CertificateList),
        ("OCSP response", ocsp_responses, ocsp.OCSPResponse),
    ):
        for item in items:
            if not isinstance(item, kind):
                raise ValidationInputError(
                    f"each {what} must be an asn1crypto {kind.__name__}, not {type(item)}"
                )


def _names_comparable(cert: x509.Certificate) -> bool:
    """Whether asn1crypto can compare the certificate's names. An attribute of unknown type
    with a non-string value (legal: AttributeValue is ANY) makes ``Name.hashable`` raise, and
    pyhanko-certvalidator hashes every name when it builds its certificate registry."""
    return within_validation("comparable", cert, lambda: _names_compare(cert))


def _names_compare(cert: x509.Certificate) -> bool:
    try:
        name_key(cert.subject)
        name_key(cert.issuer)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _comparable_or_refused(cert: x509.Certificate, what: str) -> x509.Certificate:
    if not _names_comparable(cert):
        raise ValidationInputError(
            f"the {what}'s subject or issuer name holds an attribute whose value cannot be "
            "compared (unknown attribute type with a non-string value)")
    return cert


# What asn1crypto raises, deep inside, on a value that does not parse; and pyhanko on what it
# does not implement.
_UNPROCESSABLE = (ValueError, TypeError, KeyError, IndexError, NotImplementedError)
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                 UnicodeDecodeError, RecursionError)
_ANY_EKU = "2.5.29.37.0"


def _unprocessable(what: str, exc: Exception) -> Reason:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return Reason(ReasonCode.INVALID, f"{what}: {detail}")


def _as_purpose(purpose: Purpose | str | None) -> Purpose | None:
    if purpose is None or isinstance(purpose, Purpose):
        return purpose
    try:
        return Purpose(purpose)
    except ValueError:
        choices = ", ".join(p.value for p in Purpose)
        raise ValidationInputError(f"unknown purpose {purpose!r} (one of {choices})") from None


class TrustMode(enum.Enum):
    """What a certificate given as trusted stands for."""

    CONSTRAINED_ANCHOR = "constrained-anchor"
    """The default: a trust anchor whose own certificate counts (RFC 5937): its validity,
    basicConstraints and pathLenConstraint, name constraints, unknown critical extensions and
    the RFC 5280 profile are enforced, as for any CA in the path."""
    ANCHOR = "anchor"
    """RFC 5280 §6.1.1 (d): only the anchor's name and key are used; the rest of its
    certificate (validity, extensions) is not looked at."""
    LEAF = "leaf"
    """The certificates given are trusted end entities (pinned): the leaf is valid when it is
    one of them and is itself within its validity period and well formed; no path is built."""


class Profile(enum.Enum):
    """Which rules the certificates must follow besides RFC 5280 §6."""

    RFC5280 = "rfc5280"
    """The RFC 5280 certificate and CRL profile (§4, §5), strictly."""
    WEBPKI = "webpki"
    """RFC 5280 plus the CA/Browser Forum Baseline Requirements for TLS (opt-in)."""


def _side_path_problem(path: Sequence[x509.Certificate]) -> str | None:
    """Why a path pyhanko validates on the side (a CRL issuer's, a delegated OCSP responder's;
    trust anchor first) breaks the rules the validated path is held to: the profile and the
    names' constraints, under the current validation's settings."""
    request = _CURRENT_REQUEST.get()
    if request is None or len(path) < 2:
        return None
    reasons: list[Reason] = []
    for index in range(1, len(path)):
        cert = path[index]
        last = index == len(path) - 1
        position = Position.CA if not last or cert.ca else Position.LEAF
        reasons.extend(_certificate_reasons(cert, position, request))
    reasons.extend(_name_constraint_reasons(
        path, request.trust_mode is TrustMode.CONSTRAINED_ANCHOR))
    return reasons[0].message if reasons else None


adjust_pyhanko(_side_path_problem)


# The RFC 5280 §5 profile's verdict on a CRL, by its encoding: the same CRLs come back.
_CRL_PROBLEMS: BoundedCache[bytes, tuple[str, ...]] = BoundedCache(1024)

def _crl_problems(item: crl.CertificateList) -> list[str]:
    return list(_CRL_PROBLEMS.get_or_make(encoding_key(item), lambda: tuple(crl_problems(item))))


# Verdicts of _inside_problem by the value's encoding: parsing a whole certificate or CRL is
# the costliest step of a validation, and the same CA certificates and CRLs come back on every
# call. Bounded, as the encodings come from callers.
_INSIDE_VERDICTS: BoundedCache[bytes, str | None] = BoundedCache(4096)


def _inside_problem(value: core.Asn1Value) -> str | None:
    """Why the inside of a certificate or CRL that loaded does not parse (None when it does):
    asn1crypto parses lazily, so an extension holding garbage shows only when read. Read on a
    copy, as reading can change how asn1crypto re-encodes a value (see memo.private_copy)."""
    return _INSIDE_VERDICTS.get_or_make(encoding_key(value),
                                        lambda: _parse_problem(value))


def _parse_problem(value: core.Asn1Value) -> str | None:
    try:
        fresh_copy(value).native  # noqa: B018
    except _PARSE_ERRORS as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


class _ThreadTrustManagers(threading.local):
    """pyhanko's trust managers, per thread, by the identities of the anchor objects they were
    built from: the kept private copies (memo.private_copy) come back as the same objects on
    every call while their octets are unchanged, and a trust manager is only read once built.
    Building one (filing every anchor by its name and key) is a tenth of a warm validation."""

    def __init__(self) -> None:
        self.built: OrderedDict[tuple[int, ...],
                                tuple[tuple[x509.Certificate, ...], SimpleTrustManager]] = (
            OrderedDict())


_TRUST_MANAGERS = _ThreadTrustManagers()
_TRUST_MANAGERS_KEPT = 16


def _trust_manager(anchors: Sequence[x509.Certificate]) -> SimpleTrustManager:
    key = tuple(id(a) for a in anchors)
    built = _TRUST_MANAGERS.built
    found = built.get(key)
    if found is not None and all(a is b for a, b in zip(found[0], anchors, strict=True)):
        built.move_to_end(key)
        return found[1]
    manager = SimpleTrustManager.build(trust_roots=list(anchors))
    built[key] = (tuple(anchors), manager)  # holding the anchors: their ids stay theirs
    while len(built) > _TRUST_MANAGERS_KEPT:
        built.popitem(last=False)
    return manager


#: how far a live validation's revocation data may be dated after its clock (clock skew and the
#: time taken to fetch); OpenSSL's ``ocsp -validity_period`` defaults to five minutes
LIVE_REVOCATION_SKEW = timedelta(minutes=1)


def _floor_to_second(moment: datetime) -> datetime:
    # Certificate times have whole seconds; 00:00:00.999 is still before 00:00:01.
    return moment.replace(microsecond=0)


def _validity(cert: x509.Certificate) -> tuple[datetime, datetime]:
    validity = cert["tbs_certificate"]["validity"]
    return validity["not_before"].native, validity["not_after"].native


def _validity_reason(cert: x509.Certificate, position: Position, moment: datetime
                     ) -> Reason | None:
    not_before, not_after = within_validation("validity", cert, lambda: _validity(cert))
    # the certificate is described only when it fails: naming it costs more than the check
    if moment < not_before:
        return Reason(ReasonCode.NOT_YET_VALID,
                      f"the {describe(cert, position)} is not valid before {not_before}")
    if moment > not_after:
        return Reason(ReasonCode.EXPIRED, f"the {describe(cert, position)} expired at {not_after}")
    return None


# Profile and key verdicts by (encoding, position, profile, legacy algorithms allowed): all
# they depend on. The same CA certificates are checked in every validation.
_CERTIFICATE_REASONS: BoundedCache[tuple[bytes, Position, Profile, bool], tuple[Reason, ...]] = (
    BoundedCache(4096))


def _certificate_reasons(
    cert: x509.Certificate, position: Position, request: _Request
) -> list[Reason]:
    key = (encoding_key(cert), position, request.profile, request.allow_legacy)
    return list(_CERTIFICATE_REASONS.get_or_make(
        key, lambda: tuple(_certificate_reasons_uncached(cert, position, request))))


def _certificate_reasons_uncached(
    cert: x509.Certificate, position: Position, request: _Request
) -> list[Reason]:
    problems = certificate_problems(
        cert, position, critical_name_constraints=request.profile is Profile.RFC5280)
    try:
        weakness = key_weakness(cert.public_key, allow_legacy=request.allow_legacy)
    except ValueError as exc:
        problems.append((ReasonCode.INVALID, str(exc)))
    else:
        if weakness:
            problems.append((ReasonCode.WEAK_ALGORITHM, f"has {weakness}"))
    if not problems:
        return []
    what = describe(cert, position)
    return [Reason(code, f"the {what} {text}" if text.startswith("has ") else
                   f"the {what}: {text}") for code, text in problems]


# Name-constraint verdicts by the path's encodings (and whether the anchor's constraints
# apply): all they depend on, and the same CA certificates constrain every validation.
_NAME_CONSTRAINT_VERDICTS: BoundedCache[tuple[bool, tuple[bytes, ...]], tuple[Reason, ...]] = (
    BoundedCache(4096))


def _name_constraint_reasons(path: Sequence[x509.Certificate], constrained: bool) -> list[Reason]:
    key = (constrained, tuple(encoding_key(c) for c in path))
    return list(_NAME_CONSTRAINT_VERDICTS.get_or_make(
        key, lambda: tuple(_name_constraint_reasons_uncached(path, constrained))))


def _name_constraint_reasons_uncached(path: Sequence[x509.Certificate], constrained: bool
                                      ) -> list[Reason]:
    state = NameConstraintState()
    try:
        if constrained:
            state.add(path[0], lambda: describe(path[0], Position.ANCHOR))
        for index in range(1, len(path)):
            cert = path[index]
            is_leaf = index == len(path) - 1
            position = Position.LEAF if is_leaf else Position.CA

            def what(cert: x509.Certificate = cert, position: Position = position) -> str:
                return describe(cert, position)

            if is_leaf or not self_issued(cert):  # §6.1.3 (b): self-issued CAs exempt
                state.check(cert, what)
            if not is_leaf:
                state.add(cert, what)
    except NameConstraintViolation as exc:
        return [Reason(ReasonCode.NAME_CONSTRAINTS, str(exc))]
    return []


def _eku_reasons(leaf: x509.Certificate, wanted: frozenset[str]) -> list[Reason]:
    eku = leaf.extended_key_usage_value
    if not wanted or eku is None:
        return []
    present = {e.dotted for e in eku}
    if _ANY_EKU in present:
        return []
    missing = wanted - present
    if not missing:
        return []
    return [Reason(ReasonCode.WRONG_PURPOSE,
                   f"extended key usage {', '.join(sorted(present)) or '(empty)'} does not "
                   f"include {', '.join(sorted(missing))}")]


# The settings of the validation running in this context, for the side-path check above
# (pyhanko calls it from deep inside its revocation checks).
_CURRENT_REQUEST: ContextVar[_Request | None] = ContextVar("sscard_validation_request",
                                                           default=None)


@dataclass
class _Request:
    """One validation's settings, shared by the checks of every candidate path."""

    context: ValidationContext
    params: PKIXValidationParams
    trust_mode: TrustMode
    profile: Profile
    moment: datetime
    allow_legacy: bool
    ekus: frozenset[str]


async def _check_path(path: list[x509.Certificate], request: _Request
                      ) -> tuple[list[Reason], frozenset[str]]:
    """Every reason ``path`` (anchor first) is not valid, and its user-constrained policies."""
    reasons: list[Reason] = []
    constrained = request.trust_mode is TrustMode.CONSTRAINED_ANCHOR
    anchor = path[0]
    if constrained:
        reasons.extend(_certificate_reasons(anchor, Position.ANCHOR, request))
        expiry = _validity_reason(anchor, Position.ANCHOR, request.moment)
        if expiry:
            reasons.append(expiry)
    for index in range(1, len(path)):
        position = Position.LEAF if index == len(path) - 1 else Position.CA
        reasons.extend(_certificate_reasons(path[index], position, request))
        # every certificate's validity to the second, whatever skew revocation data is allowed
        expiry = _validity_reason(path[index], position, request.moment)
        if expiry:
            reasons.append(expiry)
    reasons.extend(_name_constraint_reasons(path, constrained))
    if request.profile is Profile.WEBPKI:
        from sscard.validation import webpki  # opt-in: the public suffix list loads with it

        reasons.extend(Reason(ReasonCode.INVALID, p)
                       for p in webpki.path_problems(path, request.ekus, constrained))
    # RFC 5280 §6 itself (signatures, validity, basic constraints, policies, revocation) runs
    # even when the profile checks failed: its finding is the more telling one, so it comes first.
    core_reasons, policies = await _check_core(path, request)
    if reasons or core_reasons:
        return [*core_reasons, *reasons], frozenset()
    return [], policies


async def _check_core(path: list[x509.Certificate], request: _Request
                      ) -> tuple[list[Reason], frozenset[str]]:
    constrained = request.trust_mode is TrustMode.CONSTRAINED_ANCHOR
    anchor, leaf = path[0], path[-1]
    quals = TrustQualifiers(max_path_length=anchor.max_path_length) if constrained else None
    validation_path = ValidationPath(
        CertTrustAnchor(anchor, quals), interm=path[1:-1], leaf=leaf)
    try:
        await async_validate_path(request.context, validation_path, request.params)
    except (pv.ValidationError, pv.PathError) as exc:
        return [reason_from_exception(exc)], frozenset()
    except _UNPROCESSABLE as exc:
        return [_unprocessable("the path could not be processed", exc)], frozenset()
    policies = frozenset(
        _dotted_policy(q.user_domain_policy_id)
        for q in validation_path.qualified_policies() or ())
    return [], policies


def _leaf_trusted_directly(leaf: x509.Certificate, anchors: Sequence[x509.Certificate],
                           request: _Request) -> list[Reason]:
    if fingerprint(leaf) not in {fingerprint(a) for a in anchors}:
        return [Reason(ReasonCode.UNTRUSTED_ROOT,
                       "the certificate is not one of the directly trusted certificates "
                       "(trust mode leaf)")]
    reasons = _certificate_reasons(leaf, Position.LEAF, request)
    expiry = _validity_reason(leaf, Position.LEAF, request.moment)
    if expiry:
        reasons.append(expiry)
    if request.profile is Profile.WEBPKI:
        from sscard.validation import webpki

        reasons.extend(Reason(ReasonCode.INVALID, p)
                       for p in webpki.path_problems([leaf], request.ekus, False))
    return reasons


@one_validation_each
async def validate_path_async(
    leaf: x509.Certificate,
    *,
    trust_anchors: Iterable[x509.Certificate],
    intermediates: Iterable[x509.Certificate] = (),
    crls: Iterable[crl.CertificateList] = (),
    ocsp_responses: Iterable[ocsp.OCSPResponse] = (),
    fetch_revocation: bool = False,
    fetcher: FetcherBackend | None = None,
    revocation: RevocationMode | None = None,
    at: datetime | None = None,
    policies: Iterable[str] | None = None,
    explicit_policy: bool = False,
    inhibit_policy_mapping: bool = False,
    inhibit_any_policy: bool = False,
    purpose: Purpose | str | None = None,
    hostname: str | None = None,
    allow_legacy_algorithms: bool = False,
    trust_mode: TrustMode | str = TrustMode.CONSTRAINED_ANCHOR,
    profile: Profile | str = Profile.RFC5280,
    max_depth: int | None = None,
    extended_key_usages: Iterable[str] = (),
    budget: Budget | None = None,
) -> ValidationResult:
    """The coroutine behind :func:`validate_path` (same arguments), for async callers."""
    anchors = list(trust_anchors)
    others = list(intermediates)
    crl_list = list(crls)
    ocsp_list = list(ocsp_responses)
    _check_types(leaf, anchors, others, crl_list, ocsp_list)
    mode = _as_enum(TrustMode, trust_mode, "trust mode")
    rules = _as_enum(Profile, profile, "profile")
    ekus = frozenset(extended_key_usages)
    for oid in ekus:
        if not isinstance(oid, str) or not _OID.match(oid):
            raise ValidationInputError(f"not an extended key usage OID in dotted form: {oid!r}")
    if max_depth is not None and (not isinstance(max_depth, int) or max_depth < 0):
        raise ValidationInputError(f"the maximum depth must be a whole number >= 0, not "
                                   f"{max_depth!r}")
    limits = budget or Budget()
    if max_depth is not None:
        limits = replace(limits, max_intermediates=max_depth)
    leaf = private_copy(leaf)
    anchors = [_comparable_or_refused(private_copy(c), "trust anchor") for c in anchors]
    notes: list[Reason] = []
    usable_anchors = []
    for anchor in anchors:
        problem = _inside_problem(anchor)
        if problem:
            notes.append(Reason(ReasonCode.INVALID,
                                f"a trust anchor cannot be used, its content is malformed: "
                                f"{problem}"))
        else:
            usable_anchors.append(anchor)
    anchors = usable_anchors
    # an extra certificate that cannot be compared or read cannot be in a path either
    others = [c for c in (private_copy(c) for c in others)
              if _names_comparable(c) and _inside_problem(c) is None]
    crl_list = [private_copy(c) for c in crl_list]
    usable_crls = []
    for item in crl_list:
        problems = ([p] if (p := _inside_problem(item)) else []) or _crl_problems(item)
        if problems:
            notes.append(Reason(ReasonCode.REVOCATION_UNKNOWN,
                                f"a CRL from {_issuer_text(item)} was not used: {problems[0]}"))
        else:
            usable_crls.append(item)
    ocsp_list = [private_copy(r) for r in ocsp_list]
    if at is not None and at.utcoffset() is None:
        raise ValidationInputError("the validation time must carry a time zone")
    wanted_purpose = _as_purpose(purpose)
    if hostname is not None and not hostname.strip():
        raise ValidationInputError("empty host name")
    user_policies = _policy_set(policies)
    if revocation is None:
        has_revinfo = bool(crl_list or ocsp_list or fetch_revocation)
        revocation = RevocationMode.REQUIRE if has_revinfo else RevocationMode.NONE
    moment = _floor_to_second(at if at is not None else datetime.now(UTC))

    def answer(reasons: list[Reason], path: tuple[x509.Certificate, ...],
               policies_found: frozenset[str] = frozenset(), checked: bool = True
               ) -> ValidationResult:
        return ValidationResult(
            valid=not reasons, path_parts=tuple(handed_back(c) for c in path),
            validation_time=moment,
            revocation_checked=checked and revocation is not RevocationMode.NONE,
            user_constrained_policies=policies_found if not reasons else frozenset(),
            reasons=tuple(reasons))

    if not _names_comparable(leaf):
        # a certificate that arrived from outside (e.g. in a SignedData): an answer, not a crash
        return answer([Reason(ReasonCode.INVALID, "the certificate's subject or issuer name "
                              "holds an attribute whose value cannot be compared (unknown "
                              "attribute type with a non-string value)")], (leaf,), checked=False)
    problem = _inside_problem(leaf)
    if problem:
        return answer([Reason(ReasonCode.INVALID, f"the certificate is malformed inside: "
                              f"{problem}")], (leaf,), checked=False)

    signature_validator = SM2AwareSignatureValidator([*anchors, *others, leaf])
    context = ValidationContext(
        trust_manager=_trust_manager(anchors),
        other_certs=others,
        # None for "now": pyhanko fetches revocation information only when the validation is
        # not for a point in the past
        moment=moment if at is not None else None,
        # pyhanko applies one tolerance to certificates and to revocation data; certificates are
        # held to the second by our own check (_validity_reason, every position). A live
        # validation fetches or is handed OCSP answers and CRLs made after its clock was read
        # (thisUpdate a moment "in the future"): they get the skew OpenSSL's responder check
        # allows too; a validation at a given time gets none.
        time_tolerance=timedelta(0) if at is not None else LIVE_REVOCATION_SKEW,
        crls=usable_crls,
        ocsps=ocsp_list,
        allow_fetching=fetch_revocation,
        fetcher_backend=(fetcher or _any_url_fetcher()) if fetch_revocation else None,
        revinfo_policy=CertRevTrustPolicy(_REVOCATION_POLICIES[revocation]),
        algorithm_usage_policy=_algorithm_policy(allow_legacy_algorithms),
        signature_validator=signature_validator,
    )
    params = PKIXValidationParams(
        user_initial_policy_set=user_policies,
        initial_explicit_policy=explicit_policy,
        initial_policy_mapping_inhibit=inhibit_policy_mapping,
        initial_any_policy_inhibit=inhibit_any_policy,
    )
    request = _Request(context, params, mode, rules, moment, allow_legacy_algorithms, ekus)

    reasons: list[Reason] = []
    path: tuple[x509.Certificate, ...] = (leaf,)
    constrained: frozenset[str] = frozenset()
    current = _CURRENT_REQUEST.set(request)
    try:
        if mode is TrustMode.LEAF:
            reasons = _leaf_trusted_directly(leaf, anchors, request)
            revocation = RevocationMode.NONE  # a pinned certificate has no issuer to ask
        else:
            reasons, path, constrained = await _build_and_check(
                leaf, anchors, others, signature_validator, limits, request)
    except _UNPROCESSABLE as exc:
        reasons = [_unprocessable("the path could not be processed", exc)]
    finally:
        _CURRENT_REQUEST.reset(current)
    if reasons:
        reasons.extend(n for n in notes if n not in reasons)
    try:
        if wanted_purpose is not None:
            reasons.extend(check_purpose(leaf, wanted_purpose))
        reasons.extend(_eku_reasons(leaf, ekus))
        if hostname is not None:
            reasons.extend(check_hostname(leaf, hostname))
    except _UNPROCESSABLE as exc:
        reasons.append(_unprocessable("the leaf's usage could not be checked", exc))
    return answer(reasons, path, constrained)


async def _build_and_check(
    leaf: x509.Certificate,
    anchors: list[x509.Certificate],
    others: list[x509.Certificate],
    signature_validator: SM2AwareSignatureValidator,
    limits: Budget,
    request: _Request,
) -> tuple[list[Reason], tuple[x509.Certificate, ...], frozenset[str]]:
    """Try the candidate paths best first; the first valid one wins, else the first one's
    reasons are the answer."""

    def signed_by(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
        return signature_validator.verifies(cert, issuer)

    builder = PathBuilder(anchors, others, signed_by, limits)
    first: tuple[list[Reason], tuple[x509.Certificate, ...]] | None = None
    try:
        for candidate in builder.paths(leaf):
            reasons, policies = await _check_path(candidate, request)
            if not reasons:
                return [], tuple(candidate), policies
            if first is None:
                first = (reasons, tuple(candidate))
    except BudgetExhausted as exc:
        if first is None:
            return [Reason(ReasonCode.INVALID, str(exc))], (leaf,), frozenset()
    if first is not None:
        return first[0], first[1], frozenset()
    tops = [c for c in builder.reached[1:] if c.subject == c.issuer]
    if tops:
        return [Reason(ReasonCode.UNTRUSTED_ROOT,
                       f"the path leads to the self-signed {name_text(tops[0].subject)!r}, "
                       "which is not one of the trust anchors")], (leaf,), frozenset()
    if builder.bad_signatures:
        issuer, subject = builder.bad_signatures[0]
        position = Position.LEAF if subject is leaf else Position.CA
        alone = len(builder.bad_signatures) == 1
        return [Reason(ReasonCode.BAD_SIGNATURE,
                       f"the signature of the {describe(subject, position)} could not be "
                       f"verified with the key of {name_text(issuer.subject)!r}"
                       + (", the only certificate named as its issuer" if alone else
                          " (nor could any other path be built)"))], (leaf,), frozenset()
    message = "no path to a trust anchor could be built"
    if fingerprint(leaf) in {fingerprint(a) for a in anchors}:
        message += (" (the certificate is itself a trust anchor: trust mode 'leaf' trusts it "
                    "directly)")
    elif leaf.subject == leaf.issuer:
        message += ": the certificate is self-signed, and not one of the trust anchors"
    elif builder.steps == 0:
        message += f": no trust anchor or intermediate is named {name_text(leaf.issuer)!r}"
    return [Reason(ReasonCode.UNTRUSTED_ROOT, message)], (leaf,), frozenset()


def _issuer_text(item: crl.CertificateList) -> str:
    try:
        return repr(name_text(item.issuer))
    except _UNPROCESSABLE:
        return "an unreadable issuer"


_EnumT = TypeVar("_EnumT", bound=enum.Enum)


def _as_enum(kind: type[_EnumT], value: object, what: str) -> _EnumT:
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in kind)
        raise ValidationInputError(f"unknown {what} {value!r} (one of {choices})") from None


def validate_path(
    leaf: x509.Certificate,
    *,
    trust_anchors: Iterable[x509.Certificate],
    intermediates: Iterable[x509.Certificate] = (),
    crls: Iterable[crl.CertificateList] = (),
    ocsp_responses: Iterable[ocsp.OCSPResponse] = (),
    fetch_revocation: bool = False,
    fetcher: FetcherBackend | None = None,
    revocation: RevocationMode | None = None,
    at: datetime | None = None,
    policies: Iterable[str] | None = None,
    explicit_policy: bool = False,
    inhibit_policy_mapping: bool = False,
    inhibit_any_policy: bool = False,
    purpose: Purpose | str | None = None,
    hostname: str | None = None,
    allow_legacy_algorithms: bool = False,
    trust_mode: TrustMode | str = TrustMode.CONSTRAINED_ANCHOR,
    profile: Profile | str = Profile.RFC5280,
    max_depth: int | None = None,
    extended_key_usages: Iterable[str] = (),
    budget: Budget | None = None,
) -> ValidationResult:
    """Validate ``leaf`` up to one of ``trust_anchors`` (RFC 5280 §6.1) and return the result.

    - ``intermediates``: candidate CA certificates, in any order; the path is built from them.
    - ``crls`` (full and delta) and ``ocsp_responses``: revocation information at hand;
      ``fetch_revocation`` also asks the OCSP responders and CRL distribution points that the
      certificates name, over HTTP; ``fetcher`` (e.g. ``sscard.fetch.ValidationFetcherBackend``)
      decides how (default: any URL, with a timeout).
    - ``revocation``: how much of that is required; by default ``REQUIRE`` when any
      revocation source is given and ``NONE`` (and ``result.revocation_checked`` False)
      when none is.
    - ``at``: the validation time (aware datetime), default now.
    - ``policies`` (dotted OIDs, default anyPolicy), ``explicit_policy``,
      ``inhibit_policy_mapping``, ``inhibit_any_policy``: the RFC 5280 §6.1.1 inputs.
    - ``purpose`` and ``hostname``: checks on the leaf beyond §6.
    - ``allow_legacy_algorithms``: accept SHA-1 and 1024-bit RSA/DSA keys and signatures at
      every position, the leaf's own key included (old test data only).
    - ``trust_mode``: what the trusted certificates stand for (:class:`TrustMode`; default
      constrained-anchor, RFC 5937: the anchor certificate's constraints are enforced).
    - ``profile``: :class:`Profile` ``rfc5280`` (default, strict RFC 5280 §4-§5 rules for every
      certificate and CRL) or ``webpki`` (plus CA/Browser Forum rules, EKU through the path).
    - ``max_depth``: at most this many intermediates between anchor and leaf (default 8).
    - ``extended_key_usages``: EKU OIDs the leaf must allow (anyExtendedKeyUsage or no EKU
      extension allow everything, except in the webpki profile).
    - ``budget``: the path-building limits (:class:`~sscard.validation.building.Budget`).

    A path that is not valid is an answer, not an error: ``result.valid`` is False and
    ``result.reasons`` say why (``result.raise_for_status()`` raises the matching
    :class:`PathValidationError`). Unusable arguments raise :class:`ValidationInputError`.
    Not for use inside a running event loop: await :func:`validate_path_async` there.
    """
    # without fetching nothing is waited for: no round of an event loop is needed
    return run(
        validate_path_async(
            leaf,
            trust_anchors=trust_anchors,
            intermediates=intermediates,
            crls=crls,
            ocsp_responses=ocsp_responses,
            fetch_revocation=fetch_revocation,
            fetcher=fetcher,
            revocation=revocation,
            at=at,
            policies=policies,
            explicit_policy=explicit_policy,
            inhibit_policy_mapping=inhibit_policy_mapping,
            inhibit_any_policy=inhibit_any_policy,
            purpose=purpose,
            hostname=hostname,
            allow_legacy_algorithms=allow_legacy_algorithms,
            trust_mode=trust_mode,
            profile=profile,
            max_depth=max_depth,
            extended_key_usages=extended_key_usages,
            budget=budget,
        ),
        may_wait=fetch_revocation,
    )
