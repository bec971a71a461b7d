"""RFC 9457 problem details: the one error shape of every sscard HTTP service and client.

Every error a service answers is ``application/problem+json``::

    {"type": "urn:sscard:problem:replayed_request", "title": "Replayed request",
     "status": 401, "detail": "this signed request was already used (a replay)",
     "code": "replayed_request"}

``code`` is stable (programs branch on it), ``detail`` names what was wrong for this request.
Domain errors carry no HTTP status: each web layer has one ``ProblemTable`` mapping its domain
errors to a status and code, installed on its Flask app with ``install``; that is the only place
the layer turns an exception into an HTTP answer. Clients call ``raise_for_problem`` and accept
nothing but problem+json as an error answer.

Flask is imported only by the server side (``install``, ``response``), so a business system
using only a client needs no web framework.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask, Response

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:sscard:problem:"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    status: int
    code: str
    detail: str
    title: str = ""
    #: RFC 9457 extension members (e.g. the permission a 403 names); never type/title/status/
    #: detail/code
    extensions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", title_of(self.code))

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.code

    def to_json(self) -> dict[str, Any]:
        return {**dict(self.extensions), "type": self.type, "title": self.title,
                "status": self.status, "detail": self.detail, "code": self.code}


def title_of(code: str) -> str:
    """The fixed title of a code: ``replayed_request`` -> ``Replayed request``."""
    words = code.replace("_", " ").strip().lower()
    return words[:1].upper() + words[1:] if words else "Error"


class ProblemError(Exception):
    """An error answer from an sscard service, as a client sees it."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.status} {problem.code}: {problem.detail}")
        self.problem = problem
        self.status = problem.status
        self.code = problem.code
        self.detail = problem.detail


def parse(status: int, content_type: str | None, body: bytes) -> Problem:
    """The problem in an error answer; an answer that is not problem+json of the right shape
    becomes code ``bad_answer`` (the service, or something in front of it, is broken)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != PROBLEM_JSON:
        return Problem(status, "bad_answer",
                       f"HTTP {status} with {media or 'no content type'} instead of "
                       f"{PROBLEM_JSON}: {body[:200]!r}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Problem(status, "bad_answer", f"HTTP {status}: problem document is not JSON")
    if not (isinstance(data, dict) and isinstance(data.get("code"), str)
            and isinstance(data.get("detail"), str) and data.get("status") == status):
        return Problem(status, "bad_answer",
                       f"HTTP {status}: problem document lacks code, detail or status")
    return Problem(status, data["code"], data["detail"], str(data.get("title") or ""))


def raise_for_problem(response: Any) -> None:
    """For clients on ``requests``: raise ``ProblemError`` for any answer of 400 or more."""
    if response.status_code >= 400:
        raise ProblemError(parse(response.status_code, response.headers.get("Content-Type"),
                                 response.content))


# -- server side -------------------------------------------------------------------------


#: headers of every problem answer besides its type and length: never cached
HEADERS = (("Cache-Control", "no-store"),)


def encode(problem: Problem) -> bytes:
    """The problem document's octets (for WSGI code answering without Flask, and ``response``)."""
    return json.dumps(problem.to_json(), ensure_ascii=False).encode("utf-8")


def response(problem: Problem, headers: Mapping[str, str] | None = None) -> Response:
    from flask import Response

    answer = Response(encode(problem), status=problem.status, mimetype=PROBLEM_JSON)
    for name, value in HEADERS:
        answer.headers[name] = value
    for name, value in (headers or {}).items():
        answer.headers[name] = value
    return answer


def openapi_schema(codes: list[str] | None = None) -> dict[str, Any]:
    """The JSON schema of a problem document, for a service's OpenAPI description."""
    code: dict[str, Any] = {"type": "string", "description": "stable; programs branch on it"}
    if codes:
        code["enum"] = sorted(codes)
    return {"type": "object", "required": ["type", "title", "status", "detail", "code"],
            "properties": {"type": {"type": "string", "format": "uri"},
                           "title": {"type": "string"},
                           "status": {"type": "integer", "minimum": 400, "maximum": 599},
                           "detail": {"type": "string"}, "code": code}}


#: an entry of a table: (status, code), or a function of the exception for errors that name
#: their own code (a web layer's own error type) or need their own detail
Entry = tuple[int, str] | Callable[[Exception], "tuple[int, str] | Problem"]

#: werkzeug's HTTP errors by status: routing, methods, sizes
_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 411: "length_required",
               413: "too_large", 414: "uri_too_long", 415: "unsupported_media_type",
               429: "too_many_requests"}


def for_status(status: int, detail: str) -> Problem:
    """A problem with the generic code of an HTTP status (routing, size and method errors)."""
    return Problem(status, _HTTP_CODES.get(status, "http_error"), detail)


class ProblemTable:
    """A web layer's mapping from exception types to (status, code); the most specific class
    of an exception decides. Unmapped exceptions are a 500 ``internal_error`` whose detail
    says only that (the traceback goes to the service's log, never to the caller)."""

    def __init__(self, entries: Mapping[type[Exception], Entry],
                 observe: Callable[[Exception, Problem], None] | None = None) -> None:
        self.entries = dict(entries)
        self.observe = observe

    def problem(self, exc: Exception) -> Problem | None:
        for cls in type(exc).__mro__:
            entry = self.entries.get(cls)
            if entry is not None:
                found = entry(exc) if callable(entry) else entry
                if isinstance(found, Problem):
                    return found
                return Problem(found[0], found[1], _detail(exc))
        return None

    def install(self, app: Flask) -> None:
        from werkzeug.exceptions import HTTPException

        def handle(exc: Exception) -> Any:
            if isinstance(exc, HTTPException) and (exc.code or 500) < 400:
                return exc  # a routing redirect (trailing slash), not an error
            headers: dict[str, str] = {}
            found = self.problem(exc)
            if isinstance(exc, HTTPException):
                if found is None:
                    found = for_status(exc.code or 500, exc.description or exc.name)
                allow = exc.get_response().headers.get("Allow")
                if allow:
                    headers["Allow"] = allow
            return response(self._settle(exc, found), headers)

        app.register_error_handler(Exception, handle)

    def answer(self, exc: Exception) -> Problem:
        """The problem for an exception raised outside Flask's routing (by WSGI code that
        answers without Flask), as ``install``'s handler makes it."""
        return self._settle(exc, self.problem(exc))

    def _settle(self, exc: Exception, found: Problem | None) -> Problem:
        """``found``, else a 500 ``internal_error`` (the traceback to the log); observed."""
        if found is None:
            log.error("internal error: %s", type(exc).__name__, exc_info=exc)
            found = Problem(500, "internal_error", "internal error; see the service's log")
        if self.observe is not None:
            self.observe(exc, found)
        return found


def _detail(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or exc) or type(exc).__name__
