"""Issue 12's RA findings, each as the attack the review ran (through the web app where it ran
there) and what the RA does now:

- 2: a CSR whose subject is not the cardholder record's (``CN=employment``) is refused, naming
  the difference; the certificates' subjects come from the record;
- 3: a pre-authorised batch serves only its station, its cardholders and its time;
- 6: log-out, a password change and a lock-out end the server-side session; a captured
  certificate log-in does not replay;
- 8: one person cannot make two approvals with two accounts, nor create and enable an account
  alone, nor hold administration and approval in one account;
- 9: one answer for every failed log-in; lock-outs are per account and source with back-off;
  administrators unlock (audited);
- 14: re-POSTing another station's card and CSR gets 409 and none of its data."""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from ra.errors import BadRequest, Conflict, Forbidden
from ra.models import BatchAuthorisation, Role
from ra.service import LOGIN_REFUSED, Actor, RegistrationAuthority
from sscard.clock import FakeClock
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import format_name, parse_name
from sscard.x509.parse import load_certificate
from tests.issuance.cards import holder
from tests.ra.enroll import new_enrollment
from tests.ra.rig import PASSWORD, RaRig, person_of

_numbers = iter(range(700, 10_000))


def enrollment_body(subject: str | None = None, n: int | None = None) -> dict[str, Any]:
    n = n if n is not None else next(_numbers)
    who = holder(n)
    key = SoftwareKey.generate("sm2")
    text = (subject or "CN={name},serialNumber={ssn},C=CN").format(name=who.name, ssn=who.ssn)
    csr = CsrBuilder().subject(parse_name(text)).sign(key)
    return {"cardholder": {"ssn": who.ssn, "name": who.name, "sex": who.sex,
                           "ethnicity": who.ethnicity, "birthplace": who.birthplace,
                           "birth_date": who.birth_date},
            "card": {"card_id": secrets.token_hex(16), "card_number": f"K{n:08d}"},
            "csr": base64.b64encode(csr.dump()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf_of(client: FlaskClient, page: str = "/login") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"',
                      client.get(page).get_data(as_text=True))
    assert found is not None
    return found[1]


def web_login(app: Flask, username: str, password: str = PASSWORD,
              source: str = "127.0.0.1") -> tuple[FlaskClient, Any]:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = source
    resp = client.post("/login", data={"csrf_token": csrf_of(client), "username": username,
                                       "password": password})
    return client, resp


def flash_error(resp: Any) -> str:
    found = re.search(r'id="flash-error">([^<]*)<', resp.get_data(as_text=True))
    return "" if found is None else found[1].replace("&#39;", "'")


# -- finding 2: the subject comes from the cardholder record ----------------------------------


@pytest.mark.parametrize("subject,named", [
    ("CN=employment,serialNumber={ssn},C=CN", "CN 'employment' is not the cardholder's name"),
    ("CN={name},serialNumber={ssn},O=某省人力资源和社会保障厅,C=CN",
     "organization_name is not allowed"),
    ("CN={name},C=CN", "serialNumber is missing"),
    ("CN={name},CN=hr-sign,serialNumber={ssn},C=CN", "common_name appears more than once"),
])
def test_csr_subject_must_be_the_cardholder_record(app: Flask, rig: RaRig, subject: str,
                                                  named: str) -> None:
    sent = enrollment_body(subject)
    resp = app.test_client().post("/api/v1/enrollments", json=sent, headers=bearer(
        rig.api_token))
    assert resp.status_code == 400 and named in resp.get_json()["detail"], resp.get_json()
    # nothing stored: the cardholder is unknown afterwards
    assert rig.ra.search_cardholders(rig.actor("auditor"), sent["cardholder"]["ssn"]) == []


def test_certificates_carry_the_record_subject(rig: RaRig) -> None:
    pending, _key = new_enrollment(rig)
    done = rig.ra.approve(rig.actor("officer1"), pending["request_id"], "ok")
    who = done["cardholder"]
    want = format_name(rig.ra.holder_subject(who["ssn"], who["name"]))
    for field in ("sign_cert", "enc_cert"):
        cert = load_certificate(base64.b64decode(done[field]))
        assert format_name(cert.subject) == want


# -- finding 3: batches bound to station, cardholders, expiry ---------------------------------


def test_batch_serves_only_its_station_cardholders_and_time(app: Flask, rig: RaRig) -> None:
    kiosk = rig.ra.add_api_client(None, "kiosk-attacker")
    listed = enrollment_body()
    other = enrollment_body()
    rig.ra.authorise_batch(rig.actor("officer2"), "school-7", 2, station="station-1",
                           cardholders=[listed["cardholder"]["ssn"], "110101198001019999"])
    c = app.test_client()
    # another API client using the batch name: refused, nothing stored, nothing counted
    resp = c.post("/api/v1/enrollments", json={**listed, "batch": "school-7"},
                  headers=bearer(kiosk))
    assert resp.status_code == 403 and "not authorised for kiosk-attacker" in \
        resp.get_json()["detail"]
    # the station, for someone not in the batch
    resp = c.post("/api/v1/enrollments", json={**other, "batch": "school-7"},
                  headers=bearer(rig.api_token))
    assert resp.status_code == 403 and "not in batch school-7" in resp.get_json()["detail"]
    for sent in (listed, other):
        assert rig.ra.search_cardholders(rig.actor("auditor"), sent["cardholder"]["ssn"]) == []
    # the station, for a listed cardholder: approved on submission and issued
    resp = c.post("/api/v1/enrollments", json={**listed, "batch": "school-7"},
                  headers=bearer(rig.api_token))
    assert resp.status_code == 201 and resp.get_json()["state"] == "done"
    # expired: refused
    with rig.ra.engine.begin() as conn:
        conn.execute(update(BatchAuthorisation).where(BatchAuthorisation.name == "school-7")
                     .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    late = enrollment_body(n=None)
    resp = c.post("/api/v1/enrollments", json={**late, "batch": "school-7"},
                  headers=bearer(rig.api_token))
    assert resp.status_code == 403 and "expired" in resp.get_json()["detail"]


def test_batch_authorisation_is_checked(rig: RaRig) -> None:
    officer = rig.actor("officer2")
    with pytest.raises(BadRequest, match="no active API client"):
        rig.ra.authorise_batch(officer, "b-x", 1, station="nonexistent")
    with pytest.raises(BadRequest, match="not social security numbers: 12"):
        rig.ra.authorise_batch(officer, "b-y", 1, station="station-1", cardholders=["12"])
    with pytest.raises(BadRequest, match="lists 1 cardholders but allows 5"):
        rig.ra.authorise_batch(officer, "b-z", 5, station="station-1",
                               cardholders=["110101198001019999"])
    with pytest.raises(BadRequest, match="at most 31 days"):
        rig.ra.authorise_batch(officer, "b-w", 5, station="station-1",
                               valid_for=dt.timedelta(days=400))


# -- finding 6: sessions end on the server ----------------------------------------------------


def test_logged_out_cookie_is_worthless(app: Flask, rig: RaRig) -> None:
    client, resp = web_login(app, "officer1")
    assert resp.status_code == 302
    cookie = client.get_cookie("session")
    assert cookie is not None
    captured = cookie.value
    with client.session_transaction() as sess:
        token = sess["csrf"]
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("session", captured)
    resp = replay.get("/batches")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")


def test_password_change_ends_every_session(app: Flask, rig: RaRig) -> None:
    rig.ra.add_officer(None, "changer", "C", PASSWORD, {Role.OFFICER}, person_id=person_of(701))
    elsewhere, _ = web_login(app, "changer", source="198.51.100.1")
    here, _ = web_login(app, "changer")
    assert elsewhere.get("/batches").status_code == 200
    with here.session_transaction() as sess:
        token = sess["csrf"]
    resp = here.post("/account/password", data={
        "csrf_token": token, "password": PASSWORD, "new_password": "a new long password",
        "new_password_again": "a new long password"})
    assert resp.status_code == 302
    for client in (elsewhere, here):
        resp = client.get("/batches")
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    assert rig.ra.authenticate("changer", "a new long password").name == "changer"


def test_captured_certificate_login_does_not_replay(app: Flask, rig: RaRig) -> None:
    key = SoftwareKey.generate("sm2")
    csr = CsrBuilder().subject(parse_name(
        f"CN=replay-officer,serialNumber={person_of(702)},O=人社厅,C=CN")).sign(key)
    cert = rig.ca.issue_from_csr(csr.dump(), "ra-officer")
    rig.ra.add_officer(None, "replayer", "R", PASSWORD, {Role.OFFICER},
                       person_id=person_of(702))
    rig.ra.set_officer_certificate(None, "replayer", cert.der)
    client = app.test_client()
    page = client.get("/login/certificate").get_data(as_text=True)
    challenge = re.search(r'<code id="challenge">([0-9a-f]{64})</code>', page)
    assert challenge is not None
    cookie = client.get_cookie("session")
    assert cookie is not None
    captured_cookie = cookie.value
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    form = {"csrf_token": csrf[1], "username": "replayer",
            "signature": base64.b64encode(key.sign(bytes.fromhex(challenge[1]))).decode()}
    assert client.post("/login/certificate", data=form).status_code == 302
    # the attacker replays the captured request: same cookie, same form
    attacker = app.test_client()
    attacker.set_cookie("session", captured_cookie)
    resp = attacker.post("/login/certificate", data=form)
    assert resp.status_code in (302, 400, 401)
    assert not (resp.status_code == 302 and resp.headers["Location"].endswith("/"))
    assert attacker.get("/batches").status_code == 302
    # and the challenge itself is used up, even with a session that still held it
    with pytest.raises(Exception, match="unknown, used or expired"):
        rig.ra.authenticate_certificate("replayer", bytes.fromhex(challenge[1]),
                                        key.sign(bytes.fromhex(challenge[1])))


# -- finding 8: dual control by one person ----------------------------------------------------


def test_one_person_with_two_accounts_is_one_approver(rig: RaRig) -> None:
    same = person_of(703)
    rig.ra.add_officer(None, "zhao-a", "Zhao", PASSWORD, {Role.OFFICER}, person_id=same)
    rig.ra.add_officer(None, "zhao-b", "Zhao again", PASSWORD, {Role.OFFICER}, person_id=same)
    pending, _key = new_enrollment(rig)
    issued = rig.ra.approve(rig.actor("officer1"), pending["request_id"], "ok")
    rev = rig.ra.submit_revocation(rig.actor("operator"), serial=issued["card"]["sign_serial"])
    first = rig.ra.approve(rig.ra.authenticate("zhao-a", PASSWORD), rev["request_id"], "lost")
    assert first["state"] == "submitted"
    with pytest.raises(Forbidden, match="another person"):
        rig.ra.approve(rig.ra.authenticate("zhao-b", PASSWORD), rev["request_id"], "lost")
    # an Actor naming a person it does not have changes nothing: the database's person counts
    forged = Actor("zhao-b", frozenset({Role.OFFICER}), person="someone else")
    with pytest.raises(Forbidden, match="another person"):
        rig.ra.approve(forged, rev["request_id"], "lost")
    assert rig.ra.request(rig.actor("auditor"), rev["request_id"])["state"] == "submitted"


def test_account_administration_needs_two_administrators(rig: RaRig) -> None:
    admin = rig.actor("admin")
    with pytest.raises(BadRequest, match="administers accounts only"):
        rig.ra.add_officer(None, "boss", "B", PASSWORD, {Role.ADMINISTRATOR, Role.OFFICER},
                           person_id=person_of(704))
    rig.ra.add_officer(admin, "sock-puppet", "S", PASSWORD, {Role.OFFICER},
                       person_id=person_of(705))
    # created, but not enabled: it cannot log in, let alone approve
    with pytest.raises(Exception, match=re.escape(LOGIN_REFUSED)):
        rig.ra.authenticate("sock-puppet", PASSWORD)
    pending, _key = new_enrollment(rig)
    with pytest.raises(Forbidden, match="may not do this"):
        rig.ra.approve(Actor("sock-puppet", frozenset({Role.OFFICER})), pending["request_id"])
    # the creating administrator cannot complete it alone
    with pytest.raises(Forbidden, match="second administrator"):
        rig.ra.enable_officer(admin, "sock-puppet")
    rig.ra.add_officer(None, "admin2", "Admin 2", PASSWORD, {Role.ADMINISTRATOR},
                       person_id=person_of(706))
    admin2 = rig.ra.authenticate("admin2", PASSWORD)
    # nor can an administrator enable an account of their own person
    rig.ra.add_officer(admin, "admin2-officer", "A2", PASSWORD, {Role.OFFICER},
                       person_id=person_of(706))
    with pytest.raises(Forbidden, match="own person"):
        rig.ra.enable_officer(admin2, "admin2-officer")
    assert rig.ra.enable_officer(admin2, "sock-puppet") is True
    assert rig.ra.authenticate("sock-puppet", PASSWORD).name == "sock-puppet"
    # re-enabling a disabled account: proposed by one administrator, done by another
    rig.ra.disable_officer(admin, "sock-puppet")
    assert rig.ra.enable_officer(admin, "sock-puppet") is False
    with pytest.raises(Forbidden, match="second administrator"):
        rig.ra.enable_officer(admin, "sock-puppet")
    assert rig.ra.enable_officer(admin2, "sock-puppet") is True
    with pytest.raises(Forbidden):
        rig.ra.enable_officer(rig.actor("officer1"), "admin2-officer")
    records = {(r.record.actor, r.record.action, r.record.outcome)
               for r in rig.audit.records() if r.record.object == "sock-puppet"}
    assert ("officer:admin2", "ra.officer.enable", "success") in records
    # the creator's attempts to enable alone are on record as refused
    assert ("officer:admin", "ra.officer.enable", "failure") in records


def test_officer_certificate_is_bound_to_the_person(rig: RaRig) -> None:
    rig.ra.add_officer(None, "certbound", "C", PASSWORD, {Role.OFFICER},
                       person_id=person_of(707))
    key = SoftwareKey.generate("sm2")
    someone_else = rig.ca.issue_from_csr(CsrBuilder().subject(parse_name(
        f"CN=x,serialNumber={person_of(708)},O=人社厅,C=CN")).sign(key).dump(), "ra-officer")
    with pytest.raises(BadRequest, match="not the account's person"):
        rig.ra.set_officer_certificate(None, "certbound", someone_else.der)
    mine = rig.ca.issue_from_csr(CsrBuilder().subject(parse_name(
        f"CN=x,serialNumber={person_of(707)},O=人社厅,C=CN")).sign(key).dump(), "ra-officer")
    rig.ra.set_officer_certificate(None, "certbound", mine.der)
    rig.ra.add_officer(None, "certbound2", "C", PASSWORD, {Role.OFFICER},
                       person_id=person_of(707))
    with pytest.raises(Conflict, match="already registered for certbound"):
        rig.ra.set_officer_certificate(None, "certbound2", mine.der)


# -- finding 9: one message, back-off per account and source, unlock --------------------------


def test_failed_log_ins_all_look_alike(app: Flask, rig: RaRig) -> None:
    rig.ra.add_officer(None, "zhao", "Zhao", PASSWORD, {Role.OFFICER}, person_id=person_of(709))
    answers = set()
    for username in ("zhao", "no-such-user"):
        for _ in range(rig.ra.config.max_failed_logins + 1):
            _client, resp = web_login(app, username, "wrong wrong wrong", source="192.0.2.77")
            assert resp.status_code == 401
            answers.add(flash_error(resp))
    _client, resp = web_login(app, "zhao", PASSWORD, source="192.0.2.77")  # locked out now
    answers.add(flash_error(resp))
    # one answer for all, in the UI's language (Chinese by default)
    assert len(answers) == 1 and answers.pop().startswith("登录被拒绝")


def test_lock_out_is_per_source_with_back_off(rig: RaRig) -> None:
    clock = FakeClock()  # the rig's RA, reading the time from a clock the test advances
    ra = RegistrationAuthority(rig.ra.engine, rig.audit, rig.ra.ca, rig.ra.kmc, rig.ra.config,
                               clock=clock)
    ra.add_officer(None, "onlyadmin", "A", PASSWORD, {Role.ADMINISTRATOR},
                   person_id=person_of(710))
    attacker, office = "203.0.113.66", "10.1.2.3"
    for _ in range(ra.config.max_failed_logins):
        with pytest.raises(Exception, match=re.escape(LOGIN_REFUSED)):
            ra.authenticate("onlyadmin", "guess", attacker)
    with pytest.raises(Exception, match=re.escape(LOGIN_REFUSED)):
        ra.authenticate("onlyadmin", PASSWORD, attacker)
    # the attacker cannot lock the administrator out of their own workstation
    admin = ra.authenticate("onlyadmin", PASSWORD, office)
    # the lock-out lapses, and the next one lasts twice as long
    from ra.models import LoginThrottle

    key = f"account:onlyadmin@{attacker}"

    def throttle_row() -> Any:
        with ra.engine.begin() as conn:
            return conn.execute(LoginThrottle.__table__.select().where(
                LoginThrottle.key == key)).one()

    first = throttle_row()
    clock.advance(ra.config.lockout + dt.timedelta(seconds=1))
    for _ in range(ra.config.max_failed_logins):
        with pytest.raises(Exception, match=re.escape(LOGIN_REFUSED)):
            ra.authenticate("onlyadmin", "guess again", attacker)
    second = throttle_row()
    assert second.lockouts == 2 and first.lockouts == 1
    until = second.blocked_until if second.blocked_until.tzinfo else \
        second.blocked_until.replace(tzinfo=dt.UTC)
    assert until - clock() == 2 * ra.config.lockout  # exactly: the clock stood still
    clock.advance(2 * ra.config.lockout - dt.timedelta(seconds=1))
    with pytest.raises(Exception, match=re.escape(LOGIN_REFUSED)):
        ra.authenticate("onlyadmin", PASSWORD, attacker)  # still locked out
    # an administrator lifts it (audited), from the UI's service call
    assert [o["locked"] for o in ra.officers(admin) if o["username"] == "onlyadmin"] == [True]
    ra.unlock_officer(admin, "onlyadmin")
    assert ra.authenticate("onlyadmin", PASSWORD, attacker).name == "onlyadmin"
    assert any(r.record.action == "ra.officer.unlock" and r.record.actor == "officer:onlyadmin"
               and r.record.outcome == "success" for r in rig.audit.records())


def test_spraying_from_one_source_is_throttled(rig: RaRig) -> None:
    source = "203.0.113.99"
    for i in range(rig.ra.config.max_failed_per_source):
        with pytest.raises(Exception, match=re.escape(LOGIN_REFUSED)):
            rig.ra.authenticate(f"guess-user-{i}", "guess", source)
    with pytest.raises(Exception, match=re.escape(LOGIN_REFUSED)):
        rig.ra.authenticate("officer1", PASSWORD, source)
    assert rig.ra.authenticate("officer1", PASSWORD, "203.0.113.100").name == "officer1"


# -- finding 14: no other station's request on re-POST ----------------------------------------


def test_repost_of_another_stations_card_gets_409_without_data(app: Flask,
                                                               rig: RaRig) -> None:
    victim = enrollment_body()
    c = app.test_client()
    first = c.post("/api/v1/enrollments", json=victim, headers=bearer(rig.api_token))
    assert first.status_code == 201
    rig.ra.approve(rig.actor("officer1"), first.get_json()["request_id"], "ok")
    thief = rig.ra.add_api_client(None, "kiosk-thief")
    resp = c.post("/api/v1/enrollments", json=victim, headers=bearer(thief))
    assert resp.status_code == 409
    answer = resp.get_json()
    assert set(answer) <= {"code", "type", "title", "status", "detail"}, answer
    text = resp.get_data(as_text=True)
    assert first.get_json()["request_id"] not in text and "enveloped_key_blob" not in text
    # the owning station asking again still gets its request
    again = c.post("/api/v1/enrollments", json=victim, headers=bearer(rig.api_token))
    assert again.status_code == 201 and "enveloped_key_blob" in again.get_json()
