"""RFC 5280 §6 path validation on top of pyhanko-certvalidator.

pyhanko-certvalidator does path building, basic path processing, policies (RFC 9618 graph),
name constraints, and CRL (with delta CRLs and indirect CRLs) and OCSP checking; this module
configures it (SM2-aware signatures, revocation rules, algorithm policy), maps its exceptions to
:class:`ReasonCode`\\ s, and adds the purpose and host-name checks on the leaf.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from asn1crypto import core, crl, ocsp, x509
from pyhanko_certvalidator import CertificateValidator, PKIXValidationParams, ValidationContext
from pyhanko_certvalidator import errors as pv
from pyhanko_certvalidator.fetchers.api import FetcherBackend
from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    NO_REVOCATION,
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
    DisallowWeakAlgorithmsPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)

from sscard.validation.classify import reason_from_exception
from sscard.validation.errors import ValidationInputError
from sscard.validation.result import Reason, ReasonCode, ValidationResult
from sscard.validation.signatures import SM2AwareSignatureValidator, install_as_pyhanko_default
from sscard.validation.usage import Purpose, check_hostname, check_purpose

install_as_pyhanko_default()

ANY_POLICY = "2.5.29.32.0"
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_FETCH_TIMEOUT_SECONDS = 10
_Asn1T = TypeVar("_Asn1T", bound=core.Asn1Value)


class RevocationMode(enum.Enum):
    """How much revocation information the caller insists on."""

    REQUIRE = "require"
    """Every certificate below the trust anchor needs a valid CRL or OCSP answer."""
    LEAF = "leaf"
    """The end-entity certificate needs a valid CRL or OCSP answer; CA certificates are
    checked where they name a source (as ``IF_DECLARED``). What a relying party holding only
    the leaf's OCSP answer can ask for (OpenSSL's -crl_check, against -crl_check_all)."""
    IF_DECLARED = "if-declared"
    """Check certificates that name a CRL distribution point or OCSP responder; one that
    names a source whose answer cannot be had fails."""
    NONE = "none"
    """Do not check revocation."""


_REVOCATION_POLICIES: dict[RevocationMode, RevocationCheckingPolicy] = {
    RevocationMode.REQUIRE: REQUIRE_REVINFO,
    RevocationMode.LEAF: RevocationCheckingPolicy(
        RevocationCheckingRule.CRL_OR_OCSP_REQUIRED, RevocationCheckingRule.CHECK_IF_DECLARED
    ),
    RevocationMode.IF_DECLARED: RevocationCheckingPolicy(
        RevocationCheckingRule.CHECK_IF_DECLARED, RevocationCheckingRule.CHECK_IF_DECLARED
    ),
    RevocationMode.NONE: NO_REVOCATION,
}


def _algorithm_policy(allow_legacy: bool) -> DisallowWeakAlgorithmsPolicy:
    if allow_legacy:
        # SHA-1 and 1024-bit RSA/DSA: only for old data such as NIST PKITS (2011).
        return DisallowWeakAlgorithmsPolicy(
            weak_hash_algos=frozenset({"md2", "md5"}),
            rsa_key_size_threshold=1024,
            dsa_key_size_threshold=1024,
        )
    return DisallowWeakAlgorithmsPolicy(
        weak_hash_algos=frozenset({"md2", "md5", "sha1"}),
        rsa_key_size_threshold=2048,
        dsa_key_size_threshold=2048,
    )


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
    try:
        cert.subject.hashable  # noqa: B018
        cert.issuer.hashable  # noqa: B018
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _comparable_or_refused(cert: x509.Certificate, what: str) -> x509.Certificate:
    if not _names_comparable(cert):
        raise ValidationInputError(
            f"the {what}'s subject or issuer name holds an attribute whose value cannot be "
            "compared (unknown attribute type with a non-string value)")
    return cert


def _private_copy(value: _Asn1T) -> _Asn1T:
    """A fresh parse of ``value``. pyhanko-certvalidator and asn1crypto can re-encode parts of a
    certificate they have looked at (PKITS 4.3.6: a subjectUniqueID BIT STRING lost its
    unused-bits count), which would break a later signature check on the same object; working
    on copies keeps the caller's objects untouched and every validation repeatable."""
    return value.copy()


# What asn1crypto raises, deep inside, on a value that does not parse; and pyhanko on what it
# does not implement.
_UNPROCESSABLE = (ValueError, TypeError, KeyError, IndexError, NotImplementedError)


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
) -> ValidationResult:
    """The coroutine behind :func:`validate_path` (same arguments), for async callers."""
    anchors = list(trust_anchors)
    others = list(intermediates)
    crl_list = list(crls)
    ocsp_list = list(ocsp_responses)
    _check_types(leaf, anchors, others, crl_list, ocsp_list)
    leaf = _private_copy(leaf)
    anchors = [_comparable_or_refused(_private_copy(c), "trust anchor") for c in anchors]
    # an extra certificate that cannot be compared cannot be in a path either: leave it out
    others = [c for c in (_private_copy(c) for c in others) if _names_comparable(c)]
    crl_list = [_private_copy(c) for c in crl_list]
    ocsp_list = [_private_copy(r) for r in ocsp_list]
    if at is not None and at.utcoffset() is None:
        raise ValidationInputError("the validation time must carry a time zone")
    wanted_purpose = _as_purpose(purpose)
    if hostname is not None and not hostname.strip():
        raise ValidationInputError("empty host name")
    user_policies = _policy_set(policies)
    if revocation is None:
        has_revinfo = bool(crl_list or ocsp_list or fetch_revocation)
        revocation = RevocationMode.REQUIRE if has_revinfo else RevocationMode.NONE
    moment = at if at is not None else datetime.now(UTC)
    if not _names_comparable(leaf):
        # a certificate that arrived from outside (e.g. in a SignedData): an answer, not a crash
        return ValidationResult(
            valid=False, path=(leaf,), validation_time=moment, revocation_checked=False,
            reasons=(Reason(ReasonCode.INVALID, "the certificate's subject or issuer name holds "
                            "an attribute whose value cannot be compared (unknown attribute "
                            "type with a non-string value)"),))

    context = ValidationContext(
        trust_roots=anchors,
        other_certs=others,
        moment=at,
        crls=crl_list,
        ocsps=ocsp_list,
        allow_fetching=fetch_revocation,
        fetcher_backend=(
            (fetcher or RequestsFetcherBackend(per_request_timeout=_FETCH_TIMEOUT_SECONDS))
            if fetch_revocation
            else None
        ),
        revinfo_policy=CertRevTrustPolicy(_REVOCATION_POLICIES[revocation]),
        algorithm_usage_policy=_algorithm_policy(allow_legacy_algorithms),
        signature_validator=SM2AwareSignatureValidator([*anchors, *others, leaf]),
    )
    params = PKIXValidationParams(
        user_initial_policy_set=user_policies,
        initial_explicit_policy=explicit_policy,
        initial_policy_mapping_inhibit=inhibit_policy_mapping,
        initial_any_policy_inhibit=inhibit_any_policy,
    )
    validator = CertificateValidator(leaf, validation_context=context, pkix_params=params)

    reasons: list[Reason] = []
    path: tuple[x509.Certificate, ...] = (leaf,)
    constrained: frozenset[str] = frozenset()
    try:
        validated: ValidationPath = await validator.async_validate_path()
        path = tuple(validated)
        constrained = frozenset(
            _dotted_policy(q.user_domain_policy_id) for q in validated.qualified_policies() or ()
        )
    except (pv.ValidationError, pv.PathError) as exc:
        reasons.append(reason_from_exception(exc))
        if isinstance(exc, pv.PathValidationError):
            path = tuple(exc.original_path)
    except _UNPROCESSABLE as exc:
        # Certificates that are signed but hold values that cannot be processed (an extension
        # that does not parse, name constraints with minimum/maximum): not valid, and said so.
        reasons.append(_unprocessable("the path could not be processed", exc))

    try:
        if wanted_purpose is not None:
            reasons.extend(check_purpose(leaf, wanted_purpose))
        if hostname is not None:
            reasons.extend(check_hostname(leaf, hostname))
    except _UNPROCESSABLE as exc:
        reasons.append(_unprocessable("the leaf's usage could not be checked", exc))
    return ValidationResult(
        valid=not reasons,
        path=path,
        validation_time=moment,
        revocation_checked=revocation is not RevocationMode.NONE,
        user_constrained_policies=constrained if not reasons else frozenset(),
        reasons=tuple(reasons),
    )


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
    - ``allow_legacy_algorithms``: accept SHA-1 and 1024-bit RSA/DSA (old test data only).

    A path that is not valid is an answer, not an error: ``result.valid`` is False and
    ``result.reasons`` say why (``result.raise_for_status()`` raises the matching
    :class:`PathValidationError`). Unusable arguments raise :class:`ValidationInputError`.
    Not for use inside a running event loop: await :func:`validate_path_async` there.
    """
    return asyncio.run(
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
        )
    )
