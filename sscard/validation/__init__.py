"""Certificate path validation (RFC 5280 §6): policies, name constraints, CRL (with delta CRLs)
and OCSP revocation checking, SM2 included.

The stable API for the rest of the project::

    from sscard.validation import validate_path
    result = validate_path(leaf, trust_anchors=[root], intermediates=[ca], crls=[crl])
    if not result.valid:
        for reason in result.reasons:
            print(reason.code.value, reason.message)
"""

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
