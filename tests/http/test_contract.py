"""One HTTP contract for every service (gateway, CA, KMC, RA): errors as RFC 9457 problem
documents of one shape, parsed by the clients; /health, /ready and /metrics everywhere."""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import ocsp as asn1ocsp
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from ca.authorization import (
    AccessConfig,
    ApiOperation,
    CertificateIdentity,
    Principal,
    certificate_fingerprint,
    hash_token,
)
from ca.service import ServiceConfig
from ca.service import create_app as ca_app
from keymgmt.client import KmcClient, KmcServiceError
from keymgmt.web import create_app as kmc_app
from ra.web import WebConfig
from ra.web import create_app as ra_app
from reader_tools.issuance_client import IssuanceError, RestBackend
from sscard import problem
from sscard.crypto.hashes import digest
from sscard.gateway.client import GatewayClient, GatewayClientError
from sscard.gateway.config import GatewayConfig
from sscard.gateway.service import create_app as gateway_app
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem
from tests.cms.pki import Issued, make_ca, make_leaf
from tests.ra.rig import RaRig

SHAPE = {"type", "title", "status", "detail", "code"}
TOKEN = "contract-test-token-0123456789"


@pytest.fixture(scope="module")
def apps(rig: RaRig) -> dict[str, Flask]:
    return {
        "gateway": gateway_app(GatewayConfig(trust_anchors=[make_ca("CN=Contract Root").cert],
                                             systems={})),
        "ca": ca_app(ServiceConfig(authority=rig.ca, revocation_check_interval=0,
                                   access=AccessConfig({"batch": Principal(
                                       "batch", frozenset(ApiOperation),
                                       frozenset({"business-system"}), frozenset({rig.ca.name}),
                                       token_sha256=hash_token(TOKEN))}))),
        "kmc": kmc_app(rig.kmc),
        "ra": ra_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False)),
    }


def assert_problem(answer: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.headers["Content-Type"] == problem.PROBLEM_JSON
    body = json.loads(answer.get_data())
    assert set(body) == SHAPE, body
    assert body["status"] == status and body["type"] == problem.TYPE_PREFIX + body["code"]
    assert body["title"] and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return dict(body)


#: per service: an unauthenticated call, a path that does not exist, a wrong method
BAD = {
    "gateway": [("POST", "/v1/sign", 401, "UNAUTHENTICATED"), ("GET", "/v1/nope", 404, None),
                ("GET", "/v1/sign", 405, None)],
    "ca": [("POST", "/api/v1/certificates", 401, "unauthenticated"),
           ("GET", "/api/v1/nope", 404, "not_found"), ("GET", "/tsa", 405, None)],
    "kmc": [("POST", "/kmc/v1/escrow", 401, "unauthenticated"),
            ("GET", "/kmc/v1/nope", 404, "not_found"), ("GET", "/kmc/v1/escrow", 405, None)],
    "ra": [("POST", "/api/v1/enrollments", 401, "unauthenticated"),
           ("GET", "/api/v1/nope", 404, "not_found")],
}


@pytest.mark.parametrize("service", sorted(BAD))
def test_bad_requests_answer_problem_json_of_one_shape(apps: dict[str, Flask],
                                                       service: str) -> None:
    client = apps[service].test_client()
    for method, path, status, code in BAD[service]:
        assert_problem(client.open(path, method=method, data=b"{not json"), status, code)


def test_bad_input_with_credentials(apps: dict[str, Flask], rig: RaRig) -> None:
    ca = apps["ca"].test_client()
    assert_problem(ca.post("/api/v1/certificates", data=b"{not json",
                           headers={"Authorization": f"Bearer {TOKEN}"}), 400, "bad_json")
    kmc_token = rig.kmc.add_caller(f"ra-{secrets.token_hex(3)}", "ra")
    body = assert_problem(apps["kmc"].test_client().post(
        "/kmc/v1/escrow", data=b"[]", headers={"Authorization": f"Bearer {kmc_token}"}),
        400, "bad_request")
    assert "JSON object" in body["detail"]
    body = assert_problem(apps["ra"].test_client().post(
        "/api/v1/enrollments", json={"card": {}},
        headers={"Authorization": f"Bearer {rig.api_token}"}), 400, "bad_request")
    assert "missing field" in body["detail"]


class Served:
    def __init__(self, app: Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def test_clients_read_the_problem_document(apps: dict[str, Flask], rig: RaRig) -> None:
    key = SoftwareKey.generate("ec-p256")
    stranger = make_leaf("CN=stranger", make_ca("CN=Elsewhere", algorithm="ec-p256"), "ec-p256")
    with Served(apps["gateway"]) as url:
        with pytest.raises(GatewayClientError) as gw:
            GatewayClient(url, key=stranger.key, certificate=stranger.cert).verify(b"x")
    assert gw.value.status == 401 and gw.value.code == "UNAUTHENTICATED"
    with Served(apps["kmc"]) as url:
        with pytest.raises(KmcServiceError) as kmc:
            KmcClient(url, "kmc_wrong").escrow("x", key.public_key().spki_der())
    assert (kmc.value.status, kmc.value.kind) == (401, "unauthenticated")
    with Served(apps["ra"]) as url:
        with pytest.raises(IssuanceError, match=r"401 unauthenticated\): unknown"):
            RestBackend(url, "not-a-token").check()
    # anything but a problem document is refused as such, not trusted
    with Served(Flask("not-sscard")) as url:
        with pytest.raises(KmcServiceError) as odd:
            KmcClient(url, "k").escrow("x", key.public_key().spki_der())
    assert odd.value.kind == "bad_answer" and "text/html" in odd.value.message


def test_problem_parsing_refuses_other_shapes() -> None:
    assert problem.parse(400, "application/json", b'{"error": "x"}').code == "bad_answer"
    assert problem.parse(400, problem.PROBLEM_JSON, b"not json").code == "bad_answer"
    assert problem.parse(400, problem.PROBLEM_JSON,
                         b'{"code": "x", "detail": "d", "status": 500}').code == "bad_answer"
    ok = problem.parse(409, problem.PROBLEM_JSON + "; charset=utf-8",
                       b'{"code": "conflict", "detail": "d", "status": 409}')
    assert (ok.code, ok.detail, ok.title) == ("conflict", "d", "Conflict")


@pytest.mark.parametrize("service", ["gateway", "ca", "kmc", "ra"])
def test_health_ready_metrics(apps: dict[str, Flask], service: str) -> None:
    client = apps[service].test_client()
    health = client.get("/health")
    assert health.status_code == 200 and health.json is not None
    assert health.json["status"] == "ok" and health.json["service"] == service
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json is not None, ready.get_data(as_text=True)
    assert ready.json["status"] == "ready"
    client.get("/no/such/path")
    text = client.get("/metrics").get_data(as_text=True)
    assert f'sscard_http_requests_total{{method="GET",route="/health",service="{service}",' \
           f'status="200"}}' in text
    assert re.search(rf'sscard_http_request_duration_seconds_count\{{method="GET",'
                     rf'route="/ready",service="{service}"\}} [1-9]', text)
    assert f'route="<unmatched>",service="{service}",status="404"' in text


def test_kmc_not_ready_while_sealed(tmp_path: Path) -> None:
    from keymgmt.service import KeyManagementCentre
    from sscard.audit import AuditLog

    sealed = KeyManagementCentre.open(f"sqlite:///{tmp_path / 'kmc.db'}",
                                      audit=AuditLog.at_home(tmp_path))
    try:
        client = kmc_app(sealed).test_client()
        assert client.get("/health").status_code == 200  # alive, but
        body = assert_problem(client.get("/ready"), 503, "not_ready")
        assert "unsealed" in body["detail"]
    finally:
        sealed.close()


def _counter(client: FlaskClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _csr(cn: str) -> str:
    key = SoftwareKey.generate("ec-p256")
    csr = CsrBuilder().subject(parse_name(f"CN={cn},O=社会保障,C=CN")).sign(key)
    return der_to_pem(csr.dump(), "CERTIFICATE REQUEST").decode()


def _ocsp_get_path(issuer: Any, serial: int) -> str:
    cid = {"hash_algorithm": {"algorithm": "sha1"},
           "issuer_name_hash": digest("sha1", issuer.subject.dump()),
           "issuer_key_hash": digest("sha1", issuer.public_key["public_key"].contents[1:]),
           "serial_number": serial}
    der = asn1ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": cid}]}}).dump()
    return "/ocsp/" + urllib.parse.quote(base64.b64encode(der).decode(), safe="")


def test_ca_counts_issuance_revocation_and_ocsp_cache(apps: dict[str, Flask],
                                                      rig: RaRig) -> None:
    client = apps["ca"].test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    name = rig.ca.name
    issued_before = _counter(client, "sscard_certificates_issued_total", ca=name,
                             profile="business-system")
    answer = client.post("/api/v1/certificates", headers=auth, json={
        "profile": "business-system", "csr": _csr("Metrics System")})
    assert answer.status_code == 201, answer.json
    assert _counter(client, "sscard_certificates_issued_total", ca=name,
                    profile="business-system") == issued_before + 1
    serial = answer.json["serial"] if answer.json else ""
    hits = _counter(client, "sscard_ocsp_cache_lookups_total", result="hit")
    path = _ocsp_get_path(rig.ca.certificate, int(serial, 16))
    for _ in range(3):
        assert client.get(path).status_code == 200
    assert _counter(client, "sscard_ocsp_cache_lookups_total", result="hit") >= hits + 2
    assert _counter(client, "sscard_ocsp_cache_lookups_total", result="miss") >= 1
    revoked_before = _counter(client, "sscard_certificates_revoked_total", ca=name,
                              reason="keyCompromise")
    answer = client.post(f"/api/v1/certificates/{serial}/revoke", headers=auth,
                         json={"reason": "keyCompromise"})
    assert answer.status_code == 200, answer.json
    assert _counter(client, "sscard_certificates_revoked_total", ca=name,
                    reason="keyCompromise") == revoked_before + 1


def test_replay_memory_down_is_503_at_every_service(rig: RaRig, tmp_path: Path) -> None:
    """Without its replay memory a service cannot know a request is new: it refuses (503,
    nothing done), never accepts."""
    import sqlalchemy as sa

    from sscard import httpsig
    from sscard.gateway.config import BUSINESS_SYSTEM_POLICY, SystemPolicy, fingerprint

    ca = make_ca("CN=Down Root", algorithm="ec-p256")
    # a business system the gateway knows by fingerprint (never by CN)
    caller = make_leaf("CN=employment", ca, "ec-p256", eku=["client_auth"], extra=[
        ("certificate_policies", [{"policy_identifier": BUSINESS_SYSTEM_POLICY}], False)])
    db = f"sqlite:///{tmp_path / 'gateway.db'}"
    gateway = gateway_app(GatewayConfig(trust_anchors=[ca.cert], database_url=db,
                                        systems={"employment": SystemPolicy(
                                            frozenset({"verify"}),
                                            certificates=frozenset({fingerprint(caller.cert)}))}))
    kmc = kmc_app(rig.kmc)
    rig.kmc.add_service_caller(f"ra-{secrets.token_hex(3)}", "ra", caller.cert.dump())
    ra = ra_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False))
    rig.ra.add_signing_client(None, f"st-{secrets.token_hex(3)}", caller.cert.dump())
    # at the CA: the RA's service certificate, a principal by fingerprint that may issue
    service_key = SoftwareKey.generate("ec-p256")
    service_csr = CsrBuilder().subject(parse_name("CN=ra-service,C=CN")).sign(service_key)
    service = Issued(rig.ca.issue_from_csr(service_csr, "service").certificate, service_key)
    access = AccessConfig({"ra": Principal(
        "ra", frozenset(ApiOperation), frozenset({"business-system"}), frozenset({rig.ca.name}),
        certificate=CertificateIdentity("service",
                                        certificate_fingerprint(service.cert.dump())))})
    ca_service = ca_app(ServiceConfig(authority=rig.ca, access=access,
                                      replays=httpsig.SqlReplayStore(rig.ca.engine)))
    engines = [sa.create_engine(db), rig.kmc.engine, rig.ra.engine, rig.ca.engine]
    for engine in engines:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE sscard_request_nonces"))
    try:
        for app, path, code, who in [
                (gateway, "/v1/verify", "REPLAY_MEMORY_UNAVAILABLE", caller),
                (kmc, "/kmc/v1/escrow", "replay_memory_unavailable", caller),
                (ra, "/api/v1/enrollments", "replay_memory_unavailable", caller),
                (ca_service, "/api/v1/certificates", "replay_memory_unavailable", service)]:
            headers = httpsig.sign_request(who.key, who.cert, "POST", path, "", b"{}")
            assert_problem(app.test_client().post(path, data=b"{}", headers=headers), 503, code)
    finally:
        for engine in engines[1:]:
            httpsig.SqlReplayStore(engine)  # the table again, for the other tests


def test_strangers_write_nothing_to_the_replay_memory(rig: RaRig, tmp_path: Path) -> None:
    """A request signed with a certificate the service does not accept (any key can sign for
    a certificate it made itself) is refused before the replay memory is written: strangers
    cannot fill the shared database."""
    import sqlalchemy as sa

    from sscard import httpsig
    from sscard.gateway.config import SystemPolicy

    stranger = make_leaf("CN=employment", make_ca("CN=Self-made", algorithm="ec-p256"),
                         "ec-p256", eku=["client_auth"])
    db = f"sqlite:///{tmp_path / 'gateway.db'}"
    services = [
        (gateway_app(GatewayConfig(trust_anchors=[make_ca("CN=Real Root").cert], database_url=db,
                                   systems={"employment": SystemPolicy(frozenset({"verify"}))})),
         "/v1/verify", sa.create_engine(db)),
        (kmc_app(rig.kmc), "/kmc/v1/escrow", rig.kmc.engine),
        (ra_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False)),
         "/api/v1/enrollments", rig.ra.engine),
        (ca_app(ServiceConfig(authority=rig.ca)), "/api/v1/certificates", rig.ca.engine),
    ]

    def rows(engine: sa.Engine) -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM sscard_request_nonces"))
                       .scalar_one())

    for app, path, engine in services:
        before = rows(engine)
        for _ in range(3):
            headers = httpsig.sign_request(stranger.key, stranger.cert, "POST", path, "", b"{}")
            assert_problem(app.test_client().post(path, data=b"{}", headers=headers), 401)
        assert rows(engine) == before, path
