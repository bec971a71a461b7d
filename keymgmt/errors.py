"""The KMC's errors. Each names what was wrong; they carry no HTTP status: the web layer maps
them (``keymgmt.web.PROBLEMS``)."""

from __future__ import annotations


class KmcError(Exception):
    """Base of every KMC error."""


class ShareError(KmcError):
    """A custodian share is missing, wrong, duplicated, from another ceremony or altered."""


class CeremonyError(KmcError):
    """The ceremony cannot run or its sealed state is missing or inconsistent."""


class SealedError(KmcError):
    """The storage key is not available: the KMC has not been unsealed."""


class StorageKeyError(KmcError):
    """The storage key could not wrap or unwrap (wrong key, altered record, HSM failure)."""


class AuthenticationError(KmcError):
    """The caller is unknown or its credential is wrong."""


class PermissionDenied(KmcError):
    """The caller is known but not allowed to do this."""


class NotFound(KmcError):
    """No such key, recovery request or caller."""
    status = 404


class Conflict(KmcError):
    """A duplicate, or a state change that the current state does not allow."""


class ApprovalError(PermissionDenied):
    """Dual control refused: self-approval, a second approval by the same officer, too few."""


class RateLimited(KmcError):
    """A caller asked more often than its configured rate allows; retry later."""

    status = 429


class KmcUnavailable(KmcError):
    """The KMC could not be reached, or could not act now (5xx): nothing was done, and the
    same call may be made again later (``ra.kmc_http`` raises it for the RA)."""
