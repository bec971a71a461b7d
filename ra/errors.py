"""RA errors; each message names what was wrong.

Every refusal an officer can meet carries a stable message id (``code``) and the values it
names (``params``) beside its English detail: the web UI says it in the reader's language from
its catalogs (ra/i18n.py ERRORS), the JSON API keeps the English detail. The service stays free
of Flask and Babel."""

from __future__ import annotations

from typing import Any


class RAError(Exception):
    """Base of the RA's errors: ``RAError("english detail", "message_id", value=...)``."""

    def __init__(self, detail: str, code: str = "", /, **params: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.params = params


class BadRequest(RAError):
    """Malformed or invalid input (CSR, cardholder data, serial number, ...)."""


class NotFound(RAError):
    pass


class Conflict(RAError):
    """A duplicate (cardholder, card, officer) or a request in the wrong state."""


class ConcurrentChange(Conflict):
    """Someone else changed the record between our read and our write (optimistic lock)."""


class AuthenticationFailed(RAError):
    pass


class Forbidden(RAError):
    """The caller's role, or the approval policy, does not allow this."""


class UpstreamFailed(RAError):
    """The CA or the KMC refused or failed; the request is marked failed."""


class UpstreamUnavailable(UpstreamFailed):
    """The CA or the KMC could not be reached (or could not act now): nothing was refused, so
    the request stays approved with this as its error, and is carried on when asked again."""
