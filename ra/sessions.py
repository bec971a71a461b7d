"""Server-side sessions for the RA's web UI (Flask ``SessionInterface``).

The cookie carries only a random token; the session's data (user, CSRF token, language) lives
in the RA database under the token's SHA-256 (``RegistrationAuthority.session_*``). So a
session ends for good when the server deletes it: at log-out, on a password change, when the
account is locked out or disabled, and after ``RAConfig.session_idle`` without a request. A
captured cookie is worth nothing after that."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from flask import Flask, Request
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from ra.service import RegistrationAuthority


class ServerSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, token: str | None, data: dict[str, Any] | None = None) -> None:
        def on_update(session: ServerSession) -> None:
            session.modified = True

        super().__init__(data or {}, on_update)
        self.token = token
        self.modified = False
        #: set at log-in: the next response moves the data to a fresh token (no fixation)
        self.rotate = False
        #: set at log-out: the server forgets the session and the cookie is removed
        self.ended = False

    def regenerate(self) -> None:
        self.rotate = True
        self.modified = True

    def end(self) -> None:
        self.clear()
        self.ended = True
        self.modified = True


class ServerSessionInterface(SessionInterface):
    def __init__(self, ra: RegistrationAuthority) -> None:
        self.ra = ra

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        token = request.cookies.get(self.get_cookie_name(app))
        if token and len(token) <= 128:
            loaded = self.ra.session_load(token)
            if loaded is not None:
                return ServerSession(token, loaded[1])
        return ServerSession(None)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        name = self.get_cookie_name(app)
        cookie: dict[str, Any] = {
            "domain": self.get_cookie_domain(app), "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app), "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app)}
        response.vary.add("Cookie")
        if session.ended or (not session and session.modified):
            if session.token:
                self.ra.session_end(session.token)
            response.delete_cookie(name, **cookie)
            return
        if not session.modified or not session:
            return
        if session.token is None or session.rotate:
            if session.token:
                self.ra.session_end(session.token)
            session.token = secrets.token_urlsafe(32)
        user = session.get("user")
        self.ra.session_save(session.token, str(user) if user else None, dict(session))
        response.set_cookie(name, session.token, **cookie)
