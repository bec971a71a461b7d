"""The KMC's errors. Each names what was wrong; the service maps them to HTTP statuses."""

from __future__ import annotations


class KmcError(Exception):
    """Base of every KMC error."""

    #: HTTP status the service answers with
    status = 400


class ShareError(KmcError):
    """A custodian share is missing, wrong, duplicated, from another ceremony or altered."""


class CeremonyError(KmcError):
    """The ceremony cannot run or its sealed state is missing or inconsistent."""


class SealedError(KmcError):
    """The storage key is not available: the KMC has not been unsealed."""

    status = 503


class StorageKeyError(KmcError):
    """The storage key could not wrap or unwrap (wrong key, altered record, HSM failure)."""

    status = 500


class AuthenticationError(KmcError):
    """The caller is unknown or its credential is wrong."""

    status = 401


class PermissionDenied(KmcError):
    """The caller is known but not allowed to do this."""

    status = 403


class NotFound(KmcError):
    status = 404


class Conflict(KmcError):
    """A duplicate, or a state change that the current state does not allow."""

    status = 409


class ApprovalError(PermissionDenied):
    """Dual control refused: self-approval, a second approval by the same officer, too few."""


class RateLimited(KmcError):
    """A caller asked more often than its configured rate allows; retry later."""

    status = 429
