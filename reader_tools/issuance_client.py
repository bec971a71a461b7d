"""How the personalisation talks to the RA: in-process (``LocalBackend``, the embedded
deployment and the tests) or over the enrollment REST API (``RestBackend``). Both answer with
the API's JSON shape (``ra.service.RegistrationAuthority._info``)."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from sscard import problem
from sscard.card.records import HolderData
from sscard.httpsig import RequestSigner


class IssuanceError(Exception):
    """The RA refused or could not be reached; the message says which and why."""


class RaUnavailable(IssuanceError):
    """No card can be issued until this is fixed: the RA is unreachable, the TLS handshake
    failed, the station's credential was refused, or the RA itself failed. A batch stops."""


def network_cause(exc: BaseException) -> str:
    """A plain statement of why a request got no answer, from the innermost cause (not the
    urllib3 text, which names pool objects and retries)."""
    if isinstance(exc, requests.exceptions.SSLError):
        inner = _innermost(exc)
        detail = getattr(inner, "reason", None) or getattr(inner, "strerror", None)
        return f"TLS failure ({detail or type(inner).__name__})"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "no connection within the time limit"
    if isinstance(exc, requests.exceptions.Timeout):
        return "no answer within the time limit"
    inner = _innermost(exc)
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused (is the RA running on that host and port?)"
    if isinstance(inner, socket.gaierror):
        return "host name not found"
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror.lower()
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema |
                  requests.exceptions.InvalidSchema):
        return "not a usable URL"
    return type(inner).__name__


def _innermost(exc: BaseException) -> BaseException:
    seen = exc
    for _ in range(10):
        nested = seen.__cause__ or seen.__context__
        if nested is None and seen.args and isinstance(seen.args[0], BaseException):
            nested = seen.args[0]
        if nested is None and hasattr(seen, "reason") and isinstance(seen.reason, BaseException):
            nested = seen.reason
        if nested is None:
            break
        seen = nested
    return seen


class IssuanceBackend(Protocol):
    def check(self) -> str: ...

    def submit(self, holder: HolderData, card_id: str, card_number: str, csr_der: bytes,
               batch: str | None) -> dict[str, Any]: ...

    def status(self, request_id: str) -> dict[str, Any]: ...

    def confirm(self, request_id: str) -> dict[str, Any]: ...

    def rollback(self, request_id: str, reason: str) -> dict[str, Any]: ...


def holder_json(holder: HolderData) -> dict[str, str]:
    return {"ssn": holder.ssn, "name": holder.name, "sex": holder.sex,
            "ethnicity": holder.ethnicity, "birthplace": holder.birthplace,
            "birth_date": holder.birth_date}


class LocalBackend:
    """The RA library in this process, acting as ``actor`` (an API client or an operator)."""

    def __init__(self, ra: Any, actor: Any) -> None:
        self.ra, self.actor = ra, actor

    def _call(self, fn: Any, *args: Any, **kw: Any) -> dict[str, Any]:
        from ra.errors import RAError

        try:
            return dict(fn(self.actor, *args, **kw))
        except RAError as exc:
            raise IssuanceError(str(exc)) from None

    def check(self) -> str:
        return str(self.actor.name)

    def submit(self, holder: HolderData, card_id: str, card_number: str, csr_der: bytes,
               batch: str | None) -> dict[str, Any]:
        from ra.service import CardInput

        return self._call(self.ra.submit_enrollment, holder, CardInput(card_id, card_number),
                          csr_der, batch)

    def status(self, request_id: str) -> dict[str, Any]:
        return self._call(self.ra.request, request_id)

    def confirm(self, request_id: str) -> dict[str, Any]:
        return self._call(self.ra.confirm_personalised, request_id)

    def rollback(self, request_id: str, reason: str) -> dict[str, Any]:
        return self._call(self.ra.rollback_enrollment, request_id, reason)


class RestBackend:
    """The RA's enrollment API (``/api/v1``) with a bearer token, or signing each request
    (``signer``: ``sscard.httpsig.RequestSigner`` with the station's certificate)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60, *,
                 signer: RequestSigner | None = None) -> None:
        if (token is None) == (signer is None):
            raise ValueError("give a bearer token or a request signer (one of them)")
        self.base = base_url.rstrip("/") + "/api/v1"
        self._path = urlsplit(self.base).path
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.signer = signer
        self.timeout = timeout

    def _do(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.signer is not None:
            headers.update(self.signer.headers(method, self._path + path, "", data))
        try:
            resp = self.session.request(method, self.base + path, data=data or None,
                                        headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RaUnavailable(f"RA not reachable at {self.base}: {network_cause(exc)}") \
                from None
        if resp.status_code >= 400:
            found = problem.parse(resp.status_code, resp.headers.get("Content-Type"),
                                  resp.content)
            if resp.status_code in (401, 403):
                raise RaUnavailable(f"the RA refused this station's credential "
                                    f"({resp.status_code} {found.code}): {found.detail}")
            if resp.status_code >= 500:
                raise RaUnavailable(f"the RA failed ({resp.status_code} {found.code}): "
                                    f"{found.detail}")
            raise IssuanceError(f"RA refused ({resp.status_code} {found.code}): {found.detail}")
        try:
            data = resp.json()
        except ValueError:
            raise IssuanceError(f"RA answered {resp.status_code} without JSON") from None
        return dict(data)

    def check(self) -> str:
        return str(self._do("GET", "/whoami")["client"])

    def submit(self, holder: HolderData, card_id: str, card_number: str, csr_der: bytes,
               batch: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"cardholder": holder_json(holder),
                                "card": {"card_id": card_id, "card_number": card_number},
                                "csr": base64.b64encode(csr_der).decode("ascii")}
        if batch:
            body["batch"] = batch
        return self._do("POST", "/enrollments", body)

    def status(self, request_id: str) -> dict[str, Any]:
        return self._do("GET", f"/enrollments/{request_id}")

    def confirm(self, request_id: str) -> dict[str, Any]:
        return self._do("POST", f"/enrollments/{request_id}/confirm", {})

    def rollback(self, request_id: str, reason: str) -> dict[str, Any]:
        return self._do("POST", f"/enrollments/{request_id}/rollback", {"reason": reason})
