"""The authorisation matrix: every RA endpoint against every role, anonymous and API client
included. Only the pairs in EXPECTED may get through; everyone else gets 403 (logged in), 401
(API) or the log-in page (UI, anonymous). The table here is written independently of
ra.web.ACCESS, and every route of the app must appear in it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.ra.enroll import new_enrollment
from tests.ra.rig import RaRig

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
    ("GET", "/api/v1/openapi.json", {ANON, CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("GET", "/api/v1/whoami", {CLIENT}),
    ("POST", "/api/v1/enrollments", {CLIENT}),
    ("GET", "/api/v1/enrollments/{rid}", {CLIENT}),
    ("POST", "/api/v1/enrollments/{rid}/confirm", {CLIENT}),
    ("POST", "/api/v1/enrollments/{rid}/rollback", {CLIENT}),
    # sscard.httpops: for load balancers and monitoring
    ("GET", "/health", EVERYONE),
    ("GET", "/ready", EVERYONE),
    ("GET", "/metrics", EVERYONE),
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


def _client_for(app: Flask, rig: RaRig, who: str) -> tuple[FlaskClient, dict[str, str]]:
    client = app.test_client()
    headers: dict[str, str] = {}
    with client.session_transaction() as sess:
        sess["csrf"] = "matrix-token"
        if who in ROLE_OF:
            sess["user"] = who
            sess["roles"] = [ROLE_OF[who]]
            sess["seen"] = int(time.time())
    if who == CLIENT:
        headers["Authorization"] = f"Bearer {rig.api_token}"
    return client, headers


def _call(client: FlaskClient, method: str, path: str, headers: dict[str, str]) -> Any:
    if method == "GET":
        return client.get(path, headers=headers)
    if path.startswith("/api/"):
        # a body each endpoint refuses as bad input, so authorised calls change nothing
        return client.post(path, headers=headers, json={"reason": ""} if "rollback" not in path
                           else {"reason": "matrix"})
    return client.post(path, headers=headers, data={"csrf_token": "matrix-token"})


@pytest.mark.parametrize("who", PRINCIPALS)
def test_matrix(app: Flask, rig: RaRig, who: str) -> None:
    pending, _key = new_enrollment(rig)
    rid = pending["request_id"]
    failures = []
    for method, template, allowed in EXPECTED:
        path = template.format(rid=rid, officer="operator")
        client, headers = _client_for(app, rig, who)
        resp = _call(client, method, path, headers)
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
    client, _headers = _client_for(app, rig, AUDITOR)
    assert client.post("/batches", data={"csrf_token": "matrix-token", "name": "x",
                                         "limit": "3"}).status_code == 403
    denied = [r.record for r in rig.audit.records(before + 1)]
    assert any(r.action == "ra.access" and r.outcome == "denied" and r.actor == "officer:auditor"
               for r in denied)


def test_api_client_sees_only_its_own_requests(app: Flask, rig: RaRig) -> None:
    other_token = rig.ra.add_api_client(None, "kiosk-matrix")
    pending, _key = new_enrollment(rig)
    resp = app.test_client().get(f"/api/v1/enrollments/{pending['request_id']}",
                                 headers={"Authorization": f"Bearer {other_token}"})
    assert resp.status_code == 403 and "another client" in resp.get_json()["detail"]
    resp = app.test_client().get(f"/api/v1/enrollments/{pending['request_id']}",
                                 headers={"Authorization": "Bearer ra_wrong"})
    assert resp.status_code == 401


def test_session_follows_the_account(app: Flask, rig: RaRig) -> None:
    """A session is only as good as its account now: roles written into the cookie count for
    nothing, a locked account's session ends, and an idle session expires."""
    client, _h = _client_for(app, rig, AUDITOR)
    with client.session_transaction() as sess:
        sess["roles"] = ["officer", "administrator"]  # what a tampered session might claim
    assert client.get("/admin/officers").status_code == 403
    from ra.models import Role

    rig.ra.add_officer(None, "sessiontest", "S", "correct horse battery", {Role.OFFICER})
    client, _h = _client_for(app, rig, OFFICER)
    with client.session_transaction() as sess:
        sess["user"] = "sessiontest"
    assert client.get("/batches").status_code == 200
    from ra.errors import AuthenticationFailed

    for _ in range(rig.ra.config.max_failed_logins):
        with pytest.raises(AuthenticationFailed):
            rig.ra.authenticate("sessiontest", "wrong wrong wrong")
    resp = client.get("/batches")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    client, _h = _client_for(app, rig, OFFICER)
    with client.session_transaction() as sess:
        sess["seen"] = int(time.time()) - 31 * 60
    resp = client.get("/batches")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
