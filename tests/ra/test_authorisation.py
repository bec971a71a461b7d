"""The authorisation matrix: every RA endpoint against every credential kind -- anonymous, a
station's API token, and a real password log-in of each role. Only the pairs in EXPECTED may
get through; everyone else gets 403 (logged in), 401 (API) or the log-in page (UI,
anonymous): zero unauthorised successes. The table here is written independently of
ra.web.ACCESS, and every route of the app must appear in it. The library API gets the same
matrix (every Actor kind against every operation that names its roles)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from ra.models import WebSession
from tests.ra.enroll import new_enrollment
from tests.ra.rig import PASSWORD, RaRig, person_of

ANON, CLIENT = "anonymous", "client"
OPERATOR, OFFICER, AUDITOR, ADMIN = "operator", "officer1", "auditor", "admin"
EVERYONE = {ANON, CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN}
PRINCIPALS = sorted(EVERYONE)
ROLE_OF = {OPERATOR: "operator", OFFICER: "officer", AUDITOR: "auditor", ADMIN: "administrator"}

# (method, path template, who may) -- {rid} is a real pending request
EXPECTED: list[tuple[str, str, set[str]]] = [
    ("GET", "/login", {ANON, CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("POST", "/login", {ANON, CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("GET", "/login/certificate", {ANON, CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("POST", "/login/certificate", {ANON, CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("GET", "/language/en", {ANON, CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("POST", "/logout", {OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("GET", "/account/password", {OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("POST", "/account/password", {OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("GET", "/", {OPERATOR, OFFICER, AUDITOR}),
    ("GET", "/requests/{rid}", {OPERATOR, OFFICER, AUDITOR}),
    ("POST", "/requests/{rid}/decide", {OFFICER}),
    ("GET", "/revoke", {OPERATOR, OFFICER}),
    ("POST", "/revoke", {OPERATOR, OFFICER}),
    ("GET", "/search", {OPERATOR, OFFICER, AUDITOR}),
    ("GET", "/recoveries", {OFFICER}),
    ("POST", "/recoveries", {OFFICER}),
    ("GET", "/batches", {OFFICER}),
    ("POST", "/batches", {OFFICER}),
    ("GET", "/audit", {AUDITOR}),
    ("GET", "/admin/officers", {ADMIN}),
    ("POST", "/admin/officers", {ADMIN}),
    ("POST", "/admin/officers/{officer}/unlock", {ADMIN}),
    ("POST", "/admin/officers/{officer}/enable", {ADMIN}),
    ("POST", "/admin/officers/{officer}/disable", {ADMIN}),
    ("GET", "/api/v1/openapi.json", {ANON, CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("GET", "/api/v1/whoami", {CLIENT}),
    ("POST", "/api/v1/enrollments", {CLIENT}),
    ("GET", "/api/v1/enrollments/{rid}", {CLIENT}),
    ("POST", "/api/v1/enrollments/{rid}/confirm", {CLIENT}),
    ("POST", "/api/v1/enrollments/{rid}/rollback", {CLIENT}),
]
# Routes that are not endpoints of ours (Flask's static files: there are none to serve).
IGNORED_RULES = {"/static/<path:filename>"}


def _rule_of(path: str) -> str:
    return (path.replace("{rid}", "<request_id>").replace("{officer}", "<username>")
            .replace("/language/en", "/language/<lang>"))


def test_every_route_is_in_the_matrix(app: Flask) -> None:
    routes = {(m, r.rule) for r in app.url_map.iter_rules() for m in r.methods or ()
              if m in ("GET", "POST") and r.rule not in IGNORED_RULES}
    listed = {(m, _rule_of(p)) for m, p, _who in EXPECTED}
    assert routes == listed, f"unlisted: {routes - listed}; stale: {listed - routes}"


def log_in(app: Flask, username: str, password: str = PASSWORD) -> tuple[FlaskClient, str]:
    """A real log-in through the form; returns the client and the session's CSRF token."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    resp = client.post("/login", data={"csrf_token": found[1], "username": username,
                                       "password": password})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    page = client.get("/language/en").get_data(as_text=True)
    with client.session_transaction() as sess:
        token = str(sess["csrf"])
    return client, token


def _client_for(app: Flask, rig: RaRig, who: str) -> tuple[FlaskClient, dict[str, str], str]:
    headers: dict[str, str] = {}
    if who in ROLE_OF:
        client, token = log_in(app, who)
        return client, headers, token
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    if who == CLIENT:
        headers["Authorization"] = f"Bearer {rig.api_token}"
    return client, headers, found[1]


def _call(client: FlaskClient, method: str, path: str, headers: dict[str, str],
          csrf: str) -> Any:
    if method == "GET":
        return client.get(path, headers=headers)
    if path.startswith("/api/"):
        # a body each endpoint refuses as bad input, so authorised calls change nothing
        return client.post(path, headers=headers, json={"reason": ""} if "rollback" not in path
                           else {"reason": "matrix"})
    return client.post(path, headers=headers, data={"csrf_token": csrf})


@pytest.mark.parametrize("who", PRINCIPALS)
def test_matrix(app: Flask, rig: RaRig, who: str) -> None:
    from ra.errors import Conflict
    from ra.models import Role

    with contextlib.suppress(Conflict):
        rig.ra.add_officer(None, "bystander", "B", PASSWORD, {Role.OFFICER},
                           person_id=person_of(401))
    pending, _key = new_enrollment(rig)
    rid = pending["request_id"]
    failures = []
    for method, template, allowed in EXPECTED:
        # {officer}: an account nobody logs in with, so enabling or disabling it is harmless
        path = template.format(rid=rid, officer="bystander")
        client, headers, csrf = _client_for(app, rig, who)
        resp = _call(client, method, path, headers, csrf)
        to_login = resp.status_code == 302 and resp.headers["Location"].endswith("/login")
        refused = resp.status_code in (401, 403) or to_login
        if "logout" in path and who in allowed:
            refused = resp.status_code != 302  # logging out redirects to the log-in page
        if path in ("/login", "/login/certificate") or path.startswith("/language"):
            # open to all: a wrong password (401) or the redirect back is an answer, not a
            # refusal; a refusal would be 403
            refused = resp.status_code == 403
        if who in allowed and refused:
            failures.append(f"{who} {method} {path}: refused ({resp.status_code})")
        if who not in allowed:
            expected_code = (401 if path.startswith("/api/") else 302) if who in (ANON, CLIENT) \
                else (401 if path.startswith("/api/") else 403)
            if who == CLIENT and not path.startswith("/api/"):
                expected_code = 302  # a bearer token is no UI session
            if resp.status_code != expected_code or (expected_code == 302 and not to_login):
                failures.append(f"{who} {method} {path}: got {resp.status_code}, expected "
                                f"{expected_code}")
    assert not failures, "\n".join(failures)


def test_refusals_are_audited(app: Flask, rig: RaRig) -> None:
    before = rig.audit.size()
    client, _headers, csrf = _client_for(app, rig, AUDITOR)
    assert client.post("/batches", data={"csrf_token": csrf, "name": "x",
                                         "limit": "3"}).status_code == 403
    denied = [r.record for r in rig.audit.records(before + 1)]
    assert any(r.action == "ra.access" and r.outcome == "denied" and r.actor == "officer:auditor"
               for r in denied)


def test_api_client_sees_only_its_own_requests(app: Flask, rig: RaRig) -> None:
    other_token = rig.ra.add_api_client(None, "kiosk-matrix")
    pending, _key = new_enrollment(rig)
    resp = app.test_client().get(f"/api/v1/enrollments/{pending['request_id']}",
                                 headers={"Authorization": f"Bearer {other_token}"})
    assert resp.status_code == 403 and "another client" in resp.get_json()["error"]
    resp = app.test_client().get(f"/api/v1/enrollments/{pending['request_id']}",
                                 headers={"Authorization": "Bearer ra_wrong"})
    assert resp.status_code == 401


def test_session_follows_the_account(app: Flask, rig: RaRig) -> None:
    """A session is only as good as its account now: the cookie is a bare random token (no
    roles to tamper with), a locked-out account's sessions end, and an idle session expires."""
    from ra.models import Role

    rig.ra.add_officer(None, "sessiontest", "S", PASSWORD, {Role.OFFICER},
                       person_id=person_of(400))
    client, _token = log_in(app, "sessiontest")
    cookie = client.get_cookie("session")
    assert cookie is not None and "sessiontest" not in cookie.value and "." not in cookie.value
    assert client.get("/batches").status_code == 200
    from ra.errors import AuthenticationFailed

    for _ in range(rig.ra.config.max_failed_logins):
        with pytest.raises(AuthenticationFailed):
            rig.ra.authenticate("sessiontest", "wrong wrong wrong", "192.0.2.9")
    resp = client.get("/batches")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    rig.ra.unlock_officer(None, "sessiontest")
    client, _token = log_in(app, "sessiontest")
    with rig.ra.engine.begin() as conn:
        conn.execute(update(WebSession).where(WebSession.username == "sessiontest").values(
            seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=31)))
    resp = client.get("/batches")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
