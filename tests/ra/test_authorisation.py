"""The authorisation matrix: every RA endpoint against every credential kind -- anonymous, a
station's API token, and a real password log-in of each role. Only the pairs in EXPECTED may
get through; everyone else gets 403 (logged in), 401 (API) or the log-in page (UI,
anonymous): zero unauthorised successes. The table here is written independently of
ra.web.ACCESS, and every route of the app must appear in it. The library API gets the same
matrix (every Actor kind against every operation that names its roles)."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import re
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ra.errors import Forbidden, RAError
from ra.models import Role
from ra.service import Actor, CardInput, RegistrationAuthority
from ra.web import WebConfig, create_app
from sscard.card.records import HolderData
from sscard.clock import FakeClock
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
    ("GET", "/login/card", {ANON, CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN}),
    ("GET", "/login/card/callback", {ANON, CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN}),
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
    # only a signed caller whose certificate the RA's configuration names (none here):
    # tests/ra/test_card_number_lookup.py
    ("GET", "/api/v1/card-numbers/{serial}", set()),
    # sscard.httpops: for load balancers and monitoring
    ("GET", "/health", EVERYONE),
    ("GET", "/ready", EVERYONE),
    ("GET", "/metrics", EVERYONE),
]
# Routes that are not endpoints of ours (Flask's static files: there are none to serve).
IGNORED_RULES = {"/static/<path:filename>"}


def _rule_of(path: str) -> str:
    return (path.replace("{rid}", "<request_id>").replace("{officer}", "<username>")
            .replace("/language/en", "/language/<lang>").replace("{serial}", "<serial>"))


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
        path = template.format(rid=rid, officer="bystander", serial="00ff")
        client, headers, csrf = _client_for(app, rig, who)
        resp = _call(client, method, path, headers, csrf)
        to_login = resp.status_code == 302 and resp.headers["Location"].endswith("/login")
        refused = resp.status_code in (401, 403) or to_login
        if "logout" in path and who in allowed:
            refused = resp.status_code != 302  # logging out redirects to the log-in page
        if path.startswith(("/login", "/language")):
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
            elif who == CLIENT:
                expected_code = 403  # authenticated, but not permitted
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
    assert resp.status_code == 403 and "another client" in resp.get_json()["detail"]
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
    # idle: the same RA reading the time from a clock the test advances
    clock = FakeClock()
    idle_app = create_app(RegistrationAuthority(rig.ra.engine, rig.audit, rig.ra.ca, rig.ra.kmc,
                                                rig.ra.config, clock=clock),
                          WebConfig(secrets.token_bytes(32), secure_cookies=False))
    client, _token = log_in(idle_app, "sessiontest")
    clock.advance(rig.ra.config.session_idle - dt.timedelta(seconds=1))
    assert client.get("/batches").status_code == 200  # touched: idle again from now
    clock.advance(rig.ra.config.session_idle + dt.timedelta(seconds=1))
    resp = client.get("/batches")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")


# -- the library API: every credential kind against every operation ----------------------------

BAD_HOLDER = HolderData(ssn="x", name="", sex="9", ethnicity="99", birthplace="0",
                        birth_date="0")
BAD_CARD = CardInput("00", "")
# operation -> (call with input each refuses after authorisation, who may)
LIBRARY: dict[str, tuple[Callable[[RegistrationAuthority, Actor], Any], set[str]]] = {
    "add_officer": (lambda ra, a: ra.add_officer(a, "", "", "", set(), person_id=""), {ADMIN}),
    "enable_officer": (lambda ra, a: ra.enable_officer(a, "no-such-officer"), {ADMIN}),
    "disable_officer": (lambda ra, a: ra.disable_officer(a, "no-such-officer"), {ADMIN}),
    "set_officer_certificate": (lambda ra, a: ra.set_officer_certificate(
        a, "no-such-officer", b"junk"), {ADMIN}),
    "unlock_officer": (lambda ra, a: ra.unlock_officer(a, "no-such-officer"), {ADMIN}),
    "officers": (lambda ra, a: ra.officers(a), {ADMIN, AUDITOR}),
    "add_api_client": (lambda ra, a: ra.add_api_client(a, ""), {ADMIN}),
    "add_signing_client": (lambda ra, a: ra.add_signing_client(a, "", b"junk"), {ADMIN}),
    "authorise_batch": (lambda ra, a: ra.authorise_batch(a, "", 0, station="station-1"),
                        {OFFICER}),
    "submit_enrollment": (lambda ra, a: ra.submit_enrollment(a, BAD_HOLDER, BAD_CARD, b""),
                          {CLIENT, OPERATOR, OFFICER}),
    "submit_revocation": (lambda ra, a: ra.submit_revocation(a), {OPERATOR, OFFICER}),
    "submit_renewal": (lambda ra, a: ra.submit_renewal(a, "no-card", b""), {OPERATOR, OFFICER}),
    "submit_key_recovery": (lambda ra, a: ra.submit_key_recovery(a, "00", b"junk", ""),
                            {OPERATOR, OFFICER}),
    # only an API client whose certificate the RA names (none here):
    # tests/ra/test_card_number_lookup.py
    "card_number_of_certificate": (lambda ra, a: ra.card_number_of_certificate(a, "", "00ff"),
                                   set()),
    "approve": (lambda ra, a: ra.approve(a, "rq-none"), {OFFICER}),
    "reject": (lambda ra, a: ra.reject(a, "rq-none", "why"), {OFFICER}),
    "confirm_personalised": (lambda ra, a: ra.confirm_personalised(a, "rq-none"),
                             {CLIENT, OPERATOR, OFFICER}),
    "rollback_enrollment": (lambda ra, a: ra.rollback_enrollment(a, "rq-none", "x"),
                            {CLIENT, OPERATOR, OFFICER}),
    "request": (lambda ra, a: ra.request(a, "rq-none"), {CLIENT, OPERATOR, OFFICER, AUDITOR}),
    "queue": (lambda ra, a: ra.queue(a), {OPERATOR, OFFICER, AUDITOR}),
    "search_cardholders": (lambda ra, a: ra.search_cardholders(a, "1"),
                           {OPERATOR, OFFICER, AUDITOR}),
    "search_certificates": (lambda ra, a: ra.search_certificates(a, ""),
                            {OPERATOR, OFFICER, AUDITOR}),
    "audit_records": (lambda ra, a: ra.audit_records(a, 1), {AUDITOR}),
    "audit_page": (lambda ra, a: ra.audit_page(a, limit=1), {AUDITOR}),
    "requests_page": (lambda ra, a: ra.requests_page(a, limit=1), {OPERATOR, OFFICER, AUDITOR}),
    "batches": (lambda ra, a: ra.batches(a), {OFFICER, AUDITOR}),
    "may_decide": (lambda ra, a: ra.may_decide(a, "rq-none"), {OPERATOR, OFFICER, AUDITOR}),
}
#: credentials that are no one's: an Actor claiming every role for a name with no account, a
#: disabled officer account, a forged station
NOBODY, DISABLED, FORGED_CLIENT = "ghost", "disabled-officer", "forged-station"
ALL_ROLES = frozenset(Role)


def test_library_operations_are_all_in_the_matrix() -> None:
    public = {name for name, member in vars(RegistrationAuthority).items()
              if callable(member) and not name.startswith("_")
              and "actor" in inspect.signature(member).parameters}
    assert public == set(LIBRARY), f"unlisted: {public - set(LIBRARY)}"


def _library_actor(rig: RaRig, who: str) -> Actor:
    if who == CLIENT:
        return rig.ra.authenticate_client(rig.api_token)
    if who == FORGED_CLIENT:
        return Actor("no-such-station", ALL_ROLES, client=True)
    if who in (NOBODY, DISABLED):
        return Actor(who, ALL_ROLES)
    if who == "forged-auditor":  # an auditor's Actor claiming every role: still an auditor
        return Actor(AUDITOR, ALL_ROLES)
    return rig.ra.authenticate(who, PASSWORD)


@pytest.mark.parametrize("who", [CLIENT, OPERATOR, OFFICER, AUDITOR, ADMIN, NOBODY, DISABLED,
                                 FORGED_CLIENT, "forged-auditor"])
def test_library_matrix(rig: RaRig, who: str) -> None:
    from ra.errors import Conflict

    with contextlib.suppress(Conflict):
        rig.ra.add_officer(None, DISABLED, "D", PASSWORD, {Role.OFFICER, Role.OPERATOR},
                           person_id=person_of(402))
        rig.ra.disable_officer(_admin(rig), DISABLED)
    actor = _library_actor(rig, who)
    allowed_as = AUDITOR if who == "forged-auditor" else who
    unauthorised, wrongly_refused = [], []
    for name, (call, allowed) in LIBRARY.items():
        try:
            call(rig.ra, actor)
            outcome = "ok"
        except Forbidden as exc:
            outcome = f"forbidden: {exc}"
        except RAError as exc:
            outcome = f"{type(exc).__name__}: {exc}"  # authorised, then refused as bad input
        if allowed_as in allowed and outcome.startswith("forbidden"):
            wrongly_refused.append(f"{name}: {outcome}")
        if allowed_as not in allowed and not outcome.startswith("forbidden"):
            unauthorised.append(f"{name}: {outcome}")
    assert not unauthorised, "unauthorised successes:\n" + "\n".join(unauthorised)
    assert not wrongly_refused, "\n".join(wrongly_refused)


def _admin(rig: RaRig) -> Actor:
    return rig.ra.authenticate(ADMIN, PASSWORD)
