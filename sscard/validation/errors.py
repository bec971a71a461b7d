"""The validation layer's errors: one class per kind of failure, all under PathValidationError."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sscard.validation.result import ReasonCode

if TYPE_CHECKING:
    from sscard.validation.result import Reason, ValidationResult


class ValidationInputError(ValueError):
    """Input that cannot be used at all (malformed certificate, CRL, OCSP response, argument);
    the message names what is wrong. Distinct from a well-formed path that is not valid."""


class PathValidationError(Exception):
    """A certificate path that is not valid. ``result`` holds every reason found."""

    def __init__(self, result: ValidationResult) -> None:
        self.result = result
        self.reason: Reason = result.reasons[0]
        super().__init__(str(self.reason))


class RevokedError(PathValidationError):
    pass


class ExpiredError(PathValidationError):
    pass


class NotYetValidError(PathValidationError):
    pass


class UntrustedRootError(PathValidationError):
    pass


class BadSignatureError(PathValidationError):
    pass


class IssuerMismatchError(PathValidationError):
    pass


class BasicConstraintsError(PathValidationError):
    """A certificate acting as a CA that is not one, or a path longer than pathLenConstraint."""


class KeyUsageError(PathValidationError):
    pass


class NameConstraintsError(PathValidationError):
    pass


class PolicyError(PathValidationError):
    pass


class UnsupportedCriticalExtensionError(PathValidationError):
    pass


class RevocationUnknownError(PathValidationError):
    """No usable CRL or OCSP answer where one was required."""


class WeakAlgorithmError(PathValidationError):
    pass


class WrongPurposeError(PathValidationError):
    pass


class HostnameMismatchError(PathValidationError):
    pass


_ERROR_FOR_CODE: dict[ReasonCode, type[PathValidationError]] = {
    ReasonCode.REVOKED: RevokedError,
    ReasonCode.EXPIRED: ExpiredError,
    ReasonCode.NOT_YET_VALID: NotYetValidError,
    ReasonCode.UNTRUSTED_ROOT: UntrustedRootError,
    ReasonCode.BAD_SIGNATURE: BadSignatureError,
    ReasonCode.ISSUER_MISMATCH: IssuerMismatchError,
    ReasonCode.NOT_A_CA: BasicConstraintsError,
    ReasonCode.PATH_LENGTH: BasicConstraintsError,
    ReasonCode.KEY_USAGE: KeyUsageError,
    ReasonCode.NAME_CONSTRAINTS: NameConstraintsError,
    ReasonCode.POLICY: PolicyError,
    ReasonCode.UNSUPPORTED_CRITICAL_EXTENSION: UnsupportedCriticalExtensionError,
    ReasonCode.REVOCATION_UNKNOWN: RevocationUnknownError,
    ReasonCode.WEAK_ALGORITHM: WeakAlgorithmError,
    ReasonCode.WRONG_PURPOSE: WrongPurposeError,
    ReasonCode.HOSTNAME_MISMATCH: HostnameMismatchError,
    ReasonCode.INVALID: PathValidationError,
}


def error_for(result: ValidationResult) -> PathValidationError:
    """The exception that describes a failed result (by its first reason)."""
    if result.valid or not result.reasons:
        raise ValueError("error_for() needs a result that is not valid and has reasons")
    return _ERROR_FOR_CODE[result.reasons[0].code](result)
