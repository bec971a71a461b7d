"""The enrollment API over the Flask test client: the OpenAPI description, a full enrollment,
and bad input (malformed JSON, missing fields, bad base64, a forged CSR) refused with a message
that names the problem and nothing stored. Also the UI's search pages and language switch."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest
from flask import Flask

from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from tests.issuance.cards import holder
from tests.ra.rig import PASSWORD, RaRig, person_of


def body(n: int, key: SoftwareKey | None = None) -> dict[str, Any]:
    who = holder(n)
    key = key or SoftwareKey.generate("sm2")
    csr = CsrBuilder().subject(parse_name(f"CN={who.name},serialNumber={who.ssn},C=CN")).sign(key)
    return {"cardholder": {"ssn": who.ssn, "name": who.name, "sex": who.sex,
                           "ethnicity": who.ethnicity, "birthplace": who.birthplace,
                           "birth_date": who.birth_date},
            "card": {"card_id": secrets.token_hex(16), "card_number": f"A{n:08d}"},
            "csr": base64.b64encode(csr.dump()).decode()}


def auth(rig: RaRig) -> dict[str, str]:
    return {"Authorization": f"Bearer {rig.api_token}"}


def test_openapi_describes_every_api_route(app: Flask) -> None:
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = {"/api/v1" + p.replace("{request_id}", "<request_id>")
                  .replace("{serial}", "<serial>") for p in spec["paths"]}
    routes = {r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1/")
              and r.rule != "/api/v1/openapi.json"}
    assert routes == documented


def test_enrollment_through_the_api(app: Flask, rig: RaRig) -> None:
    c = app.test_client()
    resp = c.post("/api/v1/enrollments", json=body(401), headers=auth(rig))
    assert resp.status_code == 201, resp.get_json()
    rid = resp.get_json()["request_id"]
    assert resp.get_json()["state"] == "submitted"
    rig.ra.approve(rig.actor("officer1"), rid, "ok")
    done = c.get(f"/api/v1/enrollments/{rid}", headers=auth(rig)).get_json()
    assert done["state"] == "done"
    assert base64.b64decode(done["sign_cert"])[:1] == b"\x30"
    assert base64.b64decode(done["enveloped_key_blob"])
    assert c.post(f"/api/v1/enrollments/{rid}/confirm", json={},
                  headers=auth(rig)).get_json()["card"]["status"] == "active"
    # an issued card is revoked through officers, not rolled back by a station
    resp = c.post(f"/api/v1/enrollments/{rid}/rollback", json={"reason": "x"},
                  headers=auth(rig))
    assert resp.status_code == 409 and "revoke it instead" in resp.get_json()["detail"]


@pytest.mark.parametrize("mangle,status,message", [
    (lambda b: "not json", 400, "JSON object"),
    (lambda b: {k: v for k, v in b.items() if k != "csr"}, 400, "missing field csr"),
    (lambda b: {**b, "cardholder": {k: v for k, v in b["cardholder"].items() if k != "sex"}},
     400, "missing field sex"),
    (lambda b: {**b, "csr": "***"}, 400, "malformed enrollment"),
    (lambda b: {**b, "csr": base64.b64encode(b"\x30\x00").decode()}, 400,
     "certificate request rejected"),
    (lambda b: {**b, "card": {**b["card"], "generation": "three"}}, 400, "malformed"),
    (lambda b: {**b, "batch": 7}, 400, "batch must be a string"),
    (lambda b: {**b, "cardholder": {**b["cardholder"], "birth_date": "19990101"}}, 400,
     "birth date"),
])
def test_bad_enrollments_refused(app: Flask, rig: RaRig, mangle: Any, status: int,
                                 message: str) -> None:
    good = body(402)
    sent = mangle(good)
    c = app.test_client()
    if isinstance(sent, str):
        resp = c.post("/api/v1/enrollments", data=sent, headers=auth(rig),
                      content_type="application/json")
    else:
        resp = c.post("/api/v1/enrollments", json=sent, headers=auth(rig))
    assert resp.status_code == status
    assert message in resp.get_json()["detail"]
    assert rig.ra.search_cardholders(rig.actor("auditor"), good["cardholder"]["ssn"]) == []


def test_forged_csr_signature_refused(app: Flask, rig: RaRig) -> None:
    good = body(403)
    der = bytearray(base64.b64decode(good["csr"]))
    der[-3] ^= 0x40
    resp = app.test_client().post("/api/v1/enrollments", headers=auth(rig),
                                  json={**good, "csr": base64.b64encode(bytes(der)).decode()})
    assert resp.status_code == 400 and "certificate request rejected" in \
        resp.get_json()["detail"]


def test_wrong_authorization_scheme(app: Flask) -> None:
    resp = app.test_client().get("/api/v1/whoami", headers={"Authorization": "Basic eDp5"})
    assert resp.status_code == 401 and "Bearer" in resp.get_json()["detail"]


def login(app: Flask, user: str) -> Any:
    c = app.test_client()
    c.get("/login")
    with c.session_transaction() as sess:
        token = sess["csrf"]
    resp = c.post("/login", data={"csrf_token": token, "username": user, "password": PASSWORD})
    assert resp.status_code == 302
    return c


def test_login_form_needs_its_token(app: Flask) -> None:
    c = app.test_client()
    resp = c.post("/login", data={"username": "officer1", "password": PASSWORD})
    assert resp.status_code == 400
    with c.session_transaction() as sess:
        assert "user" not in sess


def test_search_pages_and_language(app: Flask, rig: RaRig) -> None:
    c = app.test_client()
    resp = c.post("/api/v1/enrollments", json=body(404), headers=auth(rig))
    who = resp.get_json()["cardholder"]
    rig.ra.approve(rig.actor("officer1"), resp.get_json()["request_id"], "ok")
    c = login(app, "auditor")
    page = c.get(f"/search?q={who['ssn']}").get_data(as_text=True)
    assert who["ssn"] in page and "查询" in page
    certs = c.get(f"/search?what=certificates&q={who['ssn']}").get_data(as_text=True)
    assert certs.count("<td>有效</td>") == 2  # both certificates valid, said in Chinese
    c.get("/language/en", headers={"Referer": "http://localhost/search"})
    assert "Search" in c.get("/search").get_data(as_text=True)
    bad = c.get("/search?what=certificates&q=not-hex")
    assert bad.status_code == 400 and "hexadecimal" in bad.get_data(as_text=True)


def test_certificate_login_page(app: Flask, rig: RaRig) -> None:
    """The no-JavaScript certificate log-in: the page shows a one-time challenge, the officer's
    card signs it, the signature is pasted back; a replayed signature is refused."""
    import re

    from ra.models import Role
    from sscard.card.auth import KeyServiceAuthenticator
    from sscard.card.client import CardClient
    from sscard.card.keyhandle import CardKey
    from sscard.card.transport import InProcessTransport
    from sscard.emulator import testkeys
    from sscard.emulator.card import EmulatedCard
    from sscard.emulator.sample import sample_card

    with CardClient(InProcessTransport(EmulatedCard(sample_card()))) as card:
        card.external_authenticate(0x0B, KeyServiceAuthenticator({int(k): testkeys.
                                   provincial_test_key(k, "639900", testkeys.CardAlgorithm.SM4)
                                   for k in testkeys.KeyId}))
        card.generate_signing_key()
        key = CardKey(card, lambda: "123456")
        csr = CsrBuilder().subject(parse_name(
            f"CN=web-card-officer,serialNumber={person_of(200)},O=人社厅,C=CN")).sign(key)
        cert = rig.ca.issue_from_csr(csr.dump(), "ra-officer")
        rig.ra.add_officer(None, "webcard", "Web Card", PASSWORD, {Role.OFFICER},
                           person_id=person_of(200))
        rig.ra.set_officer_certificate(rig.actor("admin"), "webcard", cert.der)

        c = app.test_client()
        page = c.get("/login/certificate").get_data(as_text=True)
        challenge = re.search(r'<code id="challenge">([0-9a-f]{64})</code>', page)
        assert challenge is not None
        with c.session_transaction() as sess:
            token = sess["csrf"]
        signature = base64.b64encode(key.sign(bytes.fromhex(challenge[1]))).decode()
        form = {"csrf_token": token, "username": "webcard", "signature": signature}
        resp = c.post("/login/certificate", data=form)
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/")
        assert c.get("/batches").status_code == 200
        # the challenge was used up: the same signature on a new session is refused
        c2 = app.test_client()
        c2.get("/login/certificate")
        with c2.session_transaction() as sess:
            form["csrf_token"] = sess["csrf"]
        resp = c2.post("/login/certificate", data=form)
        assert resp.status_code == 401 and "社保卡登录被拒绝" in resp.get_data(as_text=True)
        bad = c2.post("/login/certificate", data={**form, "signature": "@@@"})
        assert bad.status_code == 400
