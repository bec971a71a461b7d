"""Errors of the certificate authority; each message names what was wrong."""

from __future__ import annotations


class CAError(Exception):
    """Base of the CA's errors."""


class ConfigError(CAError, ValueError):
    """A hierarchy configuration (TOML) that cannot be used."""


class ProfileError(CAError, ValueError):
    """A certificate profile that fails validation, or a profile name that does not exist."""


class RequestRefused(CAError, ValueError):
    """A request (CSR or public key + subject) that its profile forbids; the message says why."""


class NotInitialised(CAError):
    """The data directory has no CA yet (run ``sscard ca init``)."""


class AlreadyInitialised(CAError):
    """``init`` on a data directory that already holds a CA."""


class UnknownCertificate(CAError, LookupError):
    """A serial number this CA never issued."""


class AlreadyRevoked(CAError):
    """Revoking a certificate that is already revoked."""


class StorageError(CAError):
    """The database could not do what was asked (after retries)."""


class NotPermitted(CAError, PermissionError):
    """A principal asked for an operation, profile or CA its permissions do not name."""


class CaServiceError(CAError):
    """An answer of the CA API outside the domain errors above (``ca.client``): the problem
    document's status and stable code, and its detail as the message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"CA API: {message} ({code}, HTTP {status})" if status else
                         f"CA API: {message} ({code})")
        self.status, self.code = status, code


class CaUnavailable(CaServiceError):
    """The CA could not be reached, or could not act now (5xx): nothing was done, and the same
    call may be made again later."""
