"""What a path validation answers: a frozen result with machine-readable reasons."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from asn1crypto import x509


class ReasonCode(enum.Enum):
    """Why a certificate path is not valid (or not valid for the caller's purpose)."""

    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    UNTRUSTED_ROOT = "UNTRUSTED_ROOT"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    ISSUER_MISMATCH = "ISSUER_MISMATCH"
    NOT_A_CA = "NOT_A_CA"
    PATH_LENGTH = "PATH_LENGTH"
    KEY_USAGE = "KEY_USAGE"
    NAME_CONSTRAINTS = "NAME_CONSTRAINTS"
    POLICY = "POLICY"
    UNSUPPORTED_CRITICAL_EXTENSION = "UNSUPPORTED_CRITICAL_EXTENSION"
    REVOCATION_UNKNOWN = "REVOCATION_UNKNOWN"
    WEAK_ALGORITHM = "WEAK_ALGORITHM"
    WRONG_PURPOSE = "WRONG_PURPOSE"
    HOSTNAME_MISMATCH = "HOSTNAME_MISMATCH"
    INVALID = "INVALID"


@dataclass(frozen=True)
class Reason:
    """One finding: a code for programs, a message for people."""

    code: ReasonCode
    message: str
    revocation_reason: str | None = None
    """For REVOKED: the RFC 5280 CRLReason name as ``RevocationReason`` spells it, e.g.
    ``keyCompromise``."""
    revocation_time: datetime | None = None
    """For REVOKED: when the certificate was revoked."""

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of :func:`sscard.validation.validate_path`."""

    valid: bool
    validation_time: datetime
    revocation_checked: bool
    """False when revocation was not checked at all (``RevocationMode.NONE``)."""
    user_constrained_policies: frozenset[str] = field(default_factory=frozenset)
    """RFC 5280 §6.1.6 user-constrained-policy-set, as dotted OIDs (anyPolicy is 2.5.29.32.0).
    Empty when the path is not valid."""
    reasons: tuple[Reason, ...] = ()
    path_parts: tuple[Callable[[], x509.Certificate], ...] = field(
        default=(), repr=False, compare=False
    )
    """What makes each certificate of :attr:`path`: the validator's private copies are parsed
    again for the caller only when the path is read (most callers never do)."""

    @cached_property
    def path(self) -> tuple[x509.Certificate, ...]:
        """Trust anchor first, leaf last: the validated path, or the one that failed (may be
        only the leaf when no path to a trust anchor could be built)."""
        return tuple(make() for make in self.path_parts)

    @property
    def leaf(self) -> x509.Certificate:
        return self.path[-1]

    @property
    def codes(self) -> frozenset[ReasonCode]:
        return frozenset(r.code for r in self.reasons)

    def raise_for_status(self) -> None:
        """Raise the :class:`PathValidationError` subclass that fits the first reason."""
        if self.valid:
            return
        from sscard.validation.errors import error_for

        raise error_for(self)
