"""Certificate path validation (RFC 5280 §6): policies, name constraints, CRL (with delta CRLs)
and OCSP revocation checking, SM2 included.

The stable API for the rest of the project::

    from sscard.validation import validate_path
    result = validate_path(leaf, trust_anchors=[root], intermediates=[ca], crls=[crl])
    if not result.valid:
        for reason in result.reasons:
            print(reason.code.value, reason.message)

Each name is loaded from its module when first used (PEP 562): ``sscard x509 verify --help``
and the modules that only need the result types do not load pyhanko-certvalidator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sscard.lazy import lazy_exports

if TYPE_CHECKING:
    from sscard.validation.building import Budget
    from sscard.validation.errors import (
        BadSignatureError,
        BasicConstraintsError,
        ExpiredError,
        HostnameMismatchError,
        IssuerMismatchError,
        KeyUsageError,
        NameConstraintsError,
        NotYetValidError,
        PathValidationError,
        PolicyError,
        RevocationUnknownError,
        RevokedError,
        UnsupportedCriticalExtensionError,
        UntrustedRootError,
        ValidationInputError,
        WeakAlgorithmError,
        WrongPurposeError,
    )
    from sscard.validation.result import Reason, ReasonCode, ValidationResult
    from sscard.validation.signatures import SM2AwareSignatureValidator
    from sscard.validation.usage import Purpose
    from sscard.validation.validator import (
        ANY_POLICY,
        Profile,
        RevocationMode,
        TrustMode,
        validate_path,
        validate_path_async,
    )

#: each public name and the module that defines it
_WHERE = {
    "Budget": "building",
    **dict.fromkeys(("BadSignatureError", "BasicConstraintsError", "ExpiredError",
                     "HostnameMismatchError", "IssuerMismatchError", "KeyUsageError",
                     "NameConstraintsError", "NotYetValidError", "PathValidationError",
                     "PolicyError", "RevocationUnknownError", "RevokedError",
                     "UnsupportedCriticalExtensionError", "UntrustedRootError",
                     "ValidationInputError", "WeakAlgorithmError", "WrongPurposeError"),
                    "errors"),
    **dict.fromkeys(("Reason", "ReasonCode", "ValidationResult"), "result"),
    "SM2AwareSignatureValidator": "signatures",
    "Purpose": "usage",
    **dict.fromkeys(("ANY_POLICY", "Profile", "RevocationMode", "TrustMode", "validate_path",
                     "validate_path_async"), "validator"),
}

__all__ = [
    "ANY_POLICY",
    "BadSignatureError",
    "BasicConstraintsError",
    "Budget",
    "ExpiredError",
    "HostnameMismatchError",
    "IssuerMismatchError",
    "KeyUsageError",
    "NameConstraintsError",
    "NotYetValidError",
    "PathValidationError",
    "PolicyError",
    "Profile",
    "Purpose",
    "Reason",
    "ReasonCode",
    "RevocationMode",
    "RevocationUnknownError",
    "RevokedError",
    "SM2AwareSignatureValidator",
    "TrustMode",
    "UnsupportedCriticalExtensionError",
    "UntrustedRootError",
    "ValidationInputError",
    "ValidationResult",
    "WeakAlgorithmError",
    "WrongPurposeError",
    "validate_path",
    "validate_path_async",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
