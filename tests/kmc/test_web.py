"""The KMC HTTP API (Flask test client over a real SQLite file): authentication, roles, escrow
and dual-control recovery over HTTP, JSON errors, and no key material in responses or logs."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from keymgmt.cardkeys import CardKeyService
from keymgmt.service import KeyManagementCentre
from keymgmt.web import API_PREFIX, create_app
from sscard.audit import AuditLog
from sscard.crypto import envelopes
from sscard.crypto.sm2 import SM2PrivateKey
from tests.kmc.kmc_helpers import new_kmc

SSN = "11010519491231002X"


@pytest.fixture
def kmc(tmp_path: Path) -> Iterator[KeyManagementCentre]:
    k = new_kmc(f"sqlite:///{tmp_path / 'kmc.db'}")
    yield k
    k.close()


@pytest.fixture
def tokens(kmc: KeyManagementCentre) -> dict[str, str]:
    tokens = {name: kmc.add_caller(name, role) for name, role in [
        ("ca", "ca"), ("ra", "ra"), ("o1", "officer"), ("o2", "officer"), ("o3", "officer"),
        ("auditor", "auditor"), ("t1", "terminal")]}
    CardKeyService(kmc).bind_terminal("t1", ["63"])
    return tokens


@pytest.fixture
def client(kmc: KeyManagementCentre) -> FlaskClient:
    return create_app(kmc).test_client()


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _post(client: FlaskClient, path: str, token: str, body: Any = None) -> Any:
    return client.post(API_PREFIX + path, json=body if body is not None else {},
                       headers=_h(token))


def test_escrow_and_recovery_over_http(client: FlaskClient, tokens: dict[str, str],
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    card = SM2PrivateKey.generate()
    r = _post(client, "/escrow", tokens["ca"],
              {"owner": SSN, "recipient_public_key": _b64(card.public_key().spki_der())})
    assert r.status_code == 201, r.json
    escrowed = envelopes.unwrap(base64.b64decode(r.json["enveloped_key_blob"]), card)
    assert envelopes.unwrap(base64.b64decode(r.json["sm2_enveloped_key"]), card) \
        .private_value() == escrowed.private_value()
    key_id = r.json["key_id"]

    new_card = SM2PrivateKey.generate()
    r = _post(client, "/recoveries", tokens["o1"], {
        "key_id": key_id, "reason": "card lost",
        "recipient": {"card_public_key": _b64(new_card.public_key().spki_der())}})
    assert r.status_code == 201, r.json
    rid = r.json["request_id"]

    r = _post(client, f"/recoveries/{rid}/approve", tokens["o1"])
    assert r.status_code == 403 and "requested this recovery" in r.json["detail"]
    assert _post(client, f"/recoveries/{rid}/approve", tokens["o2"]).status_code == 200
    r = _post(client, f"/recoveries/{rid}/complete", tokens["o1"])
    assert r.status_code == 403 and "1 of the 2 approvals" in r.json["detail"]
    assert _post(client, f"/recoveries/{rid}/approve", tokens["o3"]).json["status"] == "approved"
    r = _post(client, f"/recoveries/{rid}/complete", tokens["o1"])
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    recovered = envelopes.unwrap(base64.b64decode(r.json["enveloped_key_blob"]), new_card)
    assert recovered.private_value() == escrowed.private_value()
    assert _post(client, f"/recoveries/{rid}/complete", tokens["o1"]).status_code == 409

    r = client.get(f"{API_PREFIX}/events?action=recovery.", headers=_h(tokens["auditor"]))
    assert [e["action"] for e in r.json["events"] if "refused" not in e["action"]] == [
        "recovery.request", "recovery.approve", "recovery.approve", "recovery.complete"]

    d = escrowed.private_value().to_bytes(32, "big")
    logs = caplog.text.encode()
    assert d.hex().encode() not in logs and d.hex().upper().encode() not in logs
    for token in tokens.values():
        assert token.encode() not in logs


def test_authentication_and_roles(client: FlaskClient, tokens: dict[str, str],
                                  kmc: KeyManagementCentre) -> None:
    card = _b64(SM2PrivateKey.generate().public_key().spki_der())
    body = {"owner": SSN, "recipient_public_key": card}
    r = client.post(API_PREFIX + "/escrow", json=body)
    assert r.status_code == 401 and r.json["code"] == "unauthenticated"
    assert client.post(API_PREFIX + "/escrow", json=body,
                       headers={"Authorization": "Basic abc"}).status_code == 401
    assert _post(client, "/escrow", "kmc_forged", body).status_code == 401
    r = _post(client, "/escrow", tokens["o1"], body)
    assert r.status_code == 403 and "needs ca or ra" in r.json["detail"]
    kmc.deactivate_caller("ra")
    assert _post(client, "/escrow", tokens["ra"], body).status_code == 401
    assert client.get("/health").json == {"status": "ok", "service": "kmc", "sealed": False}


def test_bad_requests_get_clear_json_errors(client: FlaskClient, tokens: dict[str, str]) -> None:
    r = client.post(API_PREFIX + "/escrow", data=b"not json", headers=_h(tokens["ca"]))
    assert r.status_code == 400 and "JSON object" in r.json["detail"]
    r = _post(client, "/escrow", tokens["ca"], {"owner": SSN})
    assert r.status_code == 400 and "recipient_public_key" in r.json["detail"]
    r = _post(client, "/escrow", tokens["ca"], {"owner": SSN, "recipient_public_key": "%%%"})
    assert r.status_code == 400 and "base64" in r.json["detail"]
    r = _post(client, "/escrow", tokens["ca"],
              {"owner": SSN, "recipient_public_key": _b64(b"\x30\x02\x05\x00")})
    assert r.status_code == 400 and "recipient signing public key" in r.json["detail"]
    r = _post(client, "/recoveries", tokens["o1"], {"key_id": "ek-none", "reason": "x",
                                                   "recipient": {"officer": "o2"}})
    assert r.status_code == 404
    r = _post(client, "/recoveries", tokens["o1"], {"key_id": "x", "reason": "x",
                                                   "recipient": "o2"})
    assert r.status_code == 400
    r = client.post(API_PREFIX + "/escrow", data=b"{" + b" " * 300_000 + b"}",
                    headers={**_h(tokens["ca"]), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.get(API_PREFIX + "/keys", headers=_h(tokens["auditor"])).status_code == 400


def test_sealed_service_answers_503(tmp_path: Path) -> None:
    kmc = KeyManagementCentre.open(f"sqlite:///{tmp_path / 'sealed.db'}",
                                   audit=AuditLog.at_home(tmp_path))
    try:
        token = kmc.add_caller("ca", "ca")
        client = create_app(kmc).test_client()
        assert client.get("/health").json["sealed"] is True
        r = _post(client, "/escrow", token, {
            "owner": SSN,
            "recipient_public_key": _b64(SM2PrivateKey.generate().public_key().spki_der())})
        assert r.status_code == 503 and "sealed" in r.json["detail"]
    finally:
        kmc.close()


def test_hsm_step_over_http(client: FlaskClient, tokens: dict[str, str],
                            kmc: KeyManagementCentre) -> None:
    CardKeyService(kmc).generate_master_keys("63", ["sm4"])
    atr = bytes.fromhex("3B6D000000814E4323") + bytes(range(8))
    step1 = f"639900|{atr.hex()}|03|639900D156000005|{'11' * 8}|{'22' * 8}|{'00' * 8}|" \
            f"{'33' * 8}|000000000000|"
    r = _post(client, "/card-auth/hsm-step", tokens["t1"], {"step1": step1})
    assert r.status_code == 200, r.json
    internal, external, _ = r.json["step2_key"].split("|")
    service = CardKeyService(kmc)
    from sscard.card import diversify as div
    from sscard.card.diversify import CardAlgorithm

    assert bytes.fromhex(external) == div.external_auth_cryptogram(
        service.card_key("639900", atr, 0x0A, CardAlgorithm.SM4), bytes.fromhex("33" * 8),
        CardAlgorithm.SM4)
    assert len(bytes.fromhex(internal)) == 8
    assert _post(client, "/card-auth/hsm-step", tokens["ca"], {"step1": step1}).status_code == 403
    r = _post(client, "/card-auth/hsm-step", tokens["t1"], {"step1": "1|2"})
    assert r.status_code == 400 and "fields" in r.json["detail"]
