"""The CA's HTTP service over real HTTP (a werkzeug server on a free port) against a real CA
(``CertificateAuthority.init`` in a temporary data directory; SQLite, and PostgreSQL for
the cross-process revocation test)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from asn1crypto import crl as asn1crl
from asn1crypto import ocsp as asn1ocsp
from asn1crypto import tsp
from asn1crypto import x509 as asn1x509
from test_ocsp import cert_id, make_request
from werkzeug.serving import BaseWSGIServer, make_server

from ca.authority import CertificateAuthority
from ca.authorization import AccessConfig, ApiOperation, CertificateIdentity, Principal
from ca.service import ServiceConfig, create_app
from ca.tsa import TimeStampResp
from sscard import httpsig
from sscard.audit import AuditLog, default_url
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.hashes import digest
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem, pem_blocks
from sscard.x509.verify import verify_crl_signature, verify_signature

TOKEN = "s3cret-token-for-the-ra-0123456789"
#: the token's principal: what an RA batch job may do
RA_BATCH = Principal("ra-batch", frozenset(ApiOperation), frozenset({"business-system"}),
                     frozenset({"issuing"}), token_sha256=ServiceConfig.hash_token(TOKEN))
ACCESS = AccessConfig({"ra-batch": RA_BATCH})
EC_CONFIG = """\
base_url = "http://127.0.0.1:8080"

[root]
name = "root"
subject = "CN=Service Test Root,O=社会保障,C=CN"
algorithm = "ec-p256"
validity_days = 3650

[[issuing]]
name = "issuing"
subject = "CN=Service Test Issuing CA,O=社会保障,C=CN"
algorithm = "ec-p256"
validity_days = 1825
path_length = 0
"""


class Service:
    def __init__(self, authority: CertificateAuthority, url: str, app: Any) -> None:
        self.authority = authority
        self.url = url
        self.app = app

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, data: bytes = b"", **kw: Any) -> requests.Response:
        return requests.post(self.url + path, data=data, timeout=10, **kw)


def ec_authority(base: Path) -> CertificateAuthority:
    """The two-level P-256 CA of EC_CONFIG, made in ``base``, its audit log at its home."""
    config = base / "ca.toml"
    config.write_text(EC_CONFIG, encoding="utf-8")
    return CertificateAuthority.init(base / "home", config,
                                     audit=AuditLog.at_home(base / "home"))


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertificateAuthority]:
    ca = ec_authority(tmp_path_factory.mktemp("service"))
    yield ca
    ca.close()


@pytest.fixture(scope="module")
def root_authority(authority: CertificateAuthority) -> Iterator[CertificateAuthority]:
    root = CertificateAuthority.open(authority.home, name="root",
                                     audit=AuditLog.at_home(authority.home))
    yield root
    root.close()


@pytest.fixture(scope="module")
def audit_log(authority: CertificateAuthority) -> AuditLog:
    return AuditLog.open(default_url(authority.home))


@pytest.fixture(scope="module")
def ra_service(authority: CertificateAuthority) -> tuple[SoftwareKey, asn1x509.Certificate]:
    """The RA's service identity, as the administrators issue it on the CA's home."""
    key = SoftwareKey.generate("ec-p256")
    csr = CsrBuilder().subject(parse_name("CN=ra-service,C=CN")).sign(key)
    return key, authority.issue_from_csr(csr.dump(), "service").certificate


@pytest.fixture(scope="module")
def service(authority: CertificateAuthority, root_authority: CertificateAuthority,
            audit_log: AuditLog, ra_service: tuple[SoftwareKey, asn1x509.Certificate],
            ) -> Iterator[Service]:
    ra = Principal("ra", frozenset({ApiOperation.REVOKE}), frozenset({"business-system"}),
                   frozenset({"issuing"}), certificate=CertificateIdentity(
                       "service", hashlib.sha256(ra_service[1].dump()).hexdigest()))
    config = ServiceConfig(
        authority=authority,
        other_authorities=(root_authority,),
        audit_log=audit_log,
        access=ACCESS.with_principal(ra),
        revocation_check_interval=0,  # every request sees revocations from other connections
        tsa_serial_file=authority.home / "tsa-serial",
    )
    app = create_app(config)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Service(authority, f"http://127.0.0.1:{server.server_port}", app)
    server.shutdown()
    thread.join(timeout=10)


def new_csr(cn: str, algorithm: str = "ec-p256") -> tuple[SoftwareKey, bytes]:
    key = SoftwareKey.generate(algorithm)
    csr = CsrBuilder().subject(parse_name(f"CN={cn},O=社会保障,C=CN")).sign(key)
    return key, der_to_pem(csr.dump(), "CERTIFICATE REQUEST")


def issue(authority: CertificateAuthority, cn: str, profile: str = "business-system"
          ) -> tuple[SoftwareKey, asn1x509.Certificate]:
    key, csr_pem = new_csr(cn)
    issued = authority.issue_from_csr(csr_pem, profile)
    return key, issued.certificate


def ocsp_status(der: bytes) -> tuple[str, asn1ocsp.BasicOCSPResponse | None]:
    response = asn1ocsp.OCSPResponse.load(der, strict=True)
    status = response["response_status"].native
    if status != "successful":
        return status, None
    basic = response["response_bytes"]["response"].parsed
    return basic["tbs_response_data"]["responses"][0]["cert_status"].name, basic


# -- OCSP -----------------------------------------------------------------------------------


def test_ocsp_post_good_signed_by_delegated_responder(service: Service) -> None:
    _, cert = issue(service.authority, "POST good")
    reply = service.post("/ocsp", make_request(cert_id(service.authority.certificate,
                                                       cert.serial_number)),
                         headers={"Content-Type": "application/ocsp-request"})
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/ocsp-response"
    status, basic = ocsp_status(reply.content)
    assert status == "good" and basic is not None
    responder = basic["certs"][0]
    assert responder.extended_key_usage_value.native == ["ocsp_signing"]
    assert responder.ocsp_no_check_value is not None
    assert responder.issuer.dump() == service.authority.certificate.subject.dump()
    verify_signature(PublicKey.from_spki(responder.public_key.dump()),
                     basic["tbs_response_data"].dump(), basic["signature"].native,
                     basic["signature_algorithm"])


def get_path(request_der: bytes) -> str:
    return "/ocsp/" + urllib.parse.quote(base64.b64encode(request_der).decode(), safe="")


def test_rfc5019_get_cached_then_revoked(service: Service) -> None:
    _, cert = issue(service.authority, "GET then revoked")
    path = get_path(make_request(cert_id(service.authority.certificate, cert.serial_number)))
    first = service.get(path)
    assert first.status_code == 200
    assert ocsp_status(first.content)[0] == "good"
    assert first.headers["Cache-Control"].startswith("max-age=")
    assert first.headers["ETag"] and first.headers["Expires"]
    again = service.get(path)  # the in-memory fast path: the same pre-produced answer
    assert again.content == first.content
    assert urllib.parse.unquote(path) in service.app.wsgi_app.entries
    assert again.headers["ETag"] == first.headers["ETag"]
    # revoked through the CA API (another connection, as `sscard ca revoke` would)
    service.authority.revoke(cert.serial_number, "keyCompromise")
    after = service.get(path)
    status, basic = ocsp_status(after.content)
    assert status == "revoked" and basic is not None
    info = basic["tbs_response_data"]["responses"][0]["cert_status"].chosen
    assert info["revocation_reason"].native == "key_compromise"


def test_ocsp_unknown_serial(service: Service) -> None:
    reply = service.post("/ocsp", make_request(cert_id(service.authority.certificate, 0xDEAD)))
    assert ocsp_status(reply.content)[0] == "unknown"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/ocsp", b"not DER at all"),
        ("post", "/ocsp", b""),
        ("post", "/ocsp", b"\x30" + b"\x84\x00\x01\x00\x00" + b"\x00" * 70_000),
        ("get", "/ocsp/%%%not-base64%%%", b""),
        ("get", "/ocsp/" + base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), b""),
    ],
)
def test_malformed_ocsp_gets_malformed_request_not_an_http_error(
    service: Service, method: str, path: str, body: bytes
) -> None:
    reply = service.post(path, body) if method == "post" else service.get(path)
    assert reply.status_code == 200
    assert ocsp_status(reply.content)[0] == "malformed_request"


# -- CRL and certificate downloads ----------------------------------------------------------


def test_crl_download_full_and_delta_reflect_revocation(service: Service) -> None:
    authority = service.authority
    _, cert = issue(authority, "CRL victim")
    full = asn1crl.CertificateList.load(service.get("/crl/issuing.crl").content, strict=True)
    verify_crl_signature(full, authority.certificate)
    assert cert.serial_number not in {r["user_certificate"].native
                                      for r in full["tbs_cert_list"]["revoked_certificates"]}
    authority.revoke(cert.serial_number, "cessationOfOperation")
    reply = service.get("/crl/issuing.crl")
    assert reply.headers["Content-Type"] == "application/pkix-crl"
    full = asn1crl.CertificateList.load(reply.content, strict=True)
    assert cert.serial_number in {r["user_certificate"].native
                                  for r in full["tbs_cert_list"]["revoked_certificates"]}
    delta = asn1crl.CertificateList.load(service.get("/crl/issuing-delta.crl").content)
    assert delta.delta_crl_indicator_value is not None
    assert cert.serial_number in {r["user_certificate"].native
                                  for r in delta["tbs_cert_list"]["revoked_certificates"]}
    pem = service.get("/crl/issuing.pem")
    assert pem_blocks(pem.content)[0][0] == "X509 CRL"


def test_certificate_downloads(service: Service) -> None:
    authority = service.authority
    der = service.get("/certs/issuing.crt")
    assert der.headers["Content-Type"] == "application/pkix-cert"
    assert der.content == authority.certificate.dump()
    chain = [d for _, d in pem_blocks(service.get("/certs/chain.pem").content)]
    assert chain == [c.dump() for c in authority.chain()]
    assert len(chain) == 2
    assert service.get("/certs/root.crt").content == authority.chain()[-1].dump()
    ocsp_cert = asn1x509.Certificate.load(service.get("/certs/ocsp.crt").content)
    assert ocsp_cert.extended_key_usage_value.native == ["ocsp_signing"]


def test_root_publishes_its_crl_and_answers_for_the_issuing_ca(
    service: Service, root_authority: CertificateAuthority
) -> None:
    issuing = service.authority.certificate
    root = root_authority.certificate
    crl = asn1crl.CertificateList.load(service.get("/crl/root.crl").content, strict=True)
    verify_crl_signature(crl, root)
    assert service.get("/certs/root.crt").content == root.dump()
    # the issuing CA's own certificate: the root's delegated responder answers
    reply = service.post("/ocsp", make_request(cert_id(root, issuing.serial_number)))
    status, basic = ocsp_status(reply.content)
    assert status == "good" and basic is not None
    responder = basic["certs"][0]
    assert responder.issuer.dump() == root.subject.dump()
    verify_signature(PublicKey.from_spki(responder.public_key.dump()),
                     basic["tbs_response_data"].dump(), basic["signature"].native,
                     basic["signature_algorithm"])
    # ... also by RFC 5019 GET, and a serial the root never issued is unknown
    assert ocsp_status(service.get(get_path(make_request(
        cert_id(root, issuing.serial_number)))).content)[0] == "good"
    unknown = service.post("/ocsp", make_request(cert_id(root, 0xBADBAD)))
    assert ocsp_status(unknown.content)[0] == "unknown"


@pytest.mark.parametrize("path", ["/certs/nobody.crt", "/crl/other.crl", "/crl/issuing.zip",
                                  "/nothing-here"])
def test_unknown_downloads_are_json_404(service: Service, path: str) -> None:
    reply = service.get(path)
    assert reply.status_code == 404
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.json()["code"]


# -- TSA ------------------------------------------------------------------------------------


def test_tsa_over_http(service: Service) -> None:
    query = tsp.TimeStampReq({
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                            "hashed_message": digest("sha256", b"payroll.xml")},
        "nonce": 42, "cert_req": True,
    }).dump()
    reply = service.post("/tsa", query, headers={"Content-Type": "application/timestamp-query"})
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/timestamp-reply"
    resp = TimeStampResp.load(reply.content)
    assert resp["status"]["status"].native == "granted"
    tst = resp["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
    assert tst["nonce"].native == 42
    bad = TimeStampResp.load(service.post("/tsa", b"junk").content)
    assert bad["status"]["status"].native == "rejection"


# -- the authenticated API ------------------------------------------------------------------


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_tail(audit_log: AuditLog, since: int) -> list[tuple[str, str, str, str]]:
    return [(r.record.actor, r.record.action, r.record.object, r.record.outcome)
            for r in audit_log.records(since + 1)]


def test_api_refuses_anonymous_and_bad_tokens_and_records_it(
    service: Service, caplog: pytest.LogCaptureFixture, audit_log: AuditLog
) -> None:
    before = audit_log.size()
    _, csr = new_csr("anonymous")
    body = json.dumps({"profile": "business-system", "csr": csr.decode()}).encode()
    with caplog.at_level(logging.WARNING, logger="ca.service.audit"):
        anonymous = service.post("/api/v1/certificates", body)
        wrong = service.post("/api/v1/certificates", body, headers=bearer("x" * 40))
        revoke = service.post("/api/v1/certificates/01/revoke", b"{}")
    for reply in (anonymous, wrong, revoke):
        assert reply.status_code == 401
        assert reply.json()["code"] == "unauthenticated"
    refusals = [r.getMessage() for r in caplog.records if r.name == "ca.service.audit"]
    assert len(refusals) == 3
    assert "unknown API token" in refusals[1]
    assert all(TOKEN not in m and "x" * 40 not in m for m in refusals)  # no secret logged
    records = audit_tail(audit_log, before)
    assert [(a, o) for _, a, _, o in records] == [("ca.api.refused", "denied")] * 3
    assert records[2][2] == "POST /api/v1/certificates/01/revoke"
    assert all(TOKEN not in json.dumps(r.record.as_dict())
               for r in audit_log.records(before + 1))


def test_api_issue_and_revoke_with_token(service: Service, audit_log: AuditLog) -> None:
    before = audit_log.size()
    _, csr = new_csr("张三的业务系统")
    reply = service.post("/api/v1/certificates", json.dumps(
        {"profile": "business-system", "csr": csr.decode()}).encode(), headers=bearer())
    assert reply.status_code == 201, reply.text
    issued = reply.json()
    cert = asn1x509.Certificate.load(pem_blocks(issued["certificate"].encode())[0][1])
    assert f"{cert.serial_number:X}".zfill(len(issued["serial"])) == issued["serial"]
    assert cert.subject.native["common_name"] == "张三的业务系统"
    serial = issued["serial"]
    status = service.get(f"/api/v1/certificates/{serial}", headers=bearer()).json()
    assert status["status"] == "good"
    revoked = service.post(f"/api/v1/certificates/{serial}/revoke", json.dumps(
        {"reason": "keyCompromise",
         "invalidity_date": (datetime.now(UTC) - timedelta(days=1)).isoformat()}).encode(),
        headers=bearer())
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["reason"] == "keyCompromise"
    twice = service.post(f"/api/v1/certificates/{serial}/revoke", b"{}", headers=bearer())
    assert twice.status_code == 409 and twice.json()["code"] == "already_revoked"
    # each operation, recorded by the CA itself: an 'attempt' record, then its outcome, by the
    # token's caller name, once (the service writes no second copy)
    assert audit_tail(audit_log, before) == [
        ("ra-batch", "ca.certificate.issue", "profile:business-system", "attempt"),
        ("ra-batch", "ca.certificate.issue", "profile:business-system", "success"),
        ("ra-batch", "ca.certificate.revoke", f"serial:{serial}", "attempt"),
        ("ra-batch", "ca.certificate.revoke", f"serial:{serial}", "success"),
        ("ra-batch", "ca.certificate.revoke", f"serial:{serial}", "attempt"),
        ("ra-batch", "ca.certificate.revoke", f"serial:{serial}", "denied"),
    ]
    issued_record = audit_log.get(before + 2).record
    assert issued_record.details["serials"] == [serial]
    assert "already revoked" in audit_log.get(before + 6).record.details["reason"]
    # OCSP shows it at once
    path = get_path(make_request(cert_id(service.authority.certificate, cert.serial_number)))
    assert ocsp_status(service.get(path).content)[0] == "revoked"


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/v1/certificates", b"{not json", 400, "bad_json"),
        ("/api/v1/certificates", b"[1, 2]", 400, "bad_json"),
        ("/api/v1/certificates", json.dumps({"profile": "business-system"}).encode(), 400,
         "bad_request"),
        ("/api/v1/certificates", json.dumps({"profile": "business-system",
                                             "csr": "garbage"}).encode(), 400, "bad_csr"),
        ("/api/v1/certificates/ZZZ/revoke", b"{}", 400, "bad_serial"),
        ("/api/v1/certificates/0123456789ABCDEF/revoke", b"{}", 404, "unknown_certificate"),
        ("/api/v1/certificates/0123456789ABCDEF/revoke", b'{"reason": "bored"}', 400,
         "bad_request"),
    ],
)
def test_api_bad_input_is_a_clear_json_error(
    service: Service, path: str, body: bytes, status: int, error: str
) -> None:
    reply = service.post(path, body, headers=bearer())
    assert reply.status_code == status, reply.text
    assert reply.json()["code"] == error
    assert reply.json()["detail"]


def test_api_profile_refusal_is_422_with_reason(service: Service) -> None:
    _, csr = new_csr("a plain request")
    key = SoftwareKey.generate("ec-p256")  # and one whose subject the profile refuses
    bad = der_to_pem(CsrBuilder().subject(parse_name("CN=x,CN=y,O=o")).sign(key).dump(),
                     "CERTIFICATE REQUEST")
    reply = service.post("/api/v1/certificates", json.dumps(
        {"profile": "business-system", "csr": bad.decode()}).encode(), headers=bearer())
    assert reply.status_code == 422
    assert "more than 1 CN" in reply.json()["detail"]
    # a profile the principal was not given (known or not) is a 403 naming the permission
    for profile in ("no-such-profile", "cardholder-sign"):
        reply = service.post("/api/v1/certificates", json.dumps(
            {"profile": profile, "csr": csr.decode()}).encode(), headers=bearer())
        assert reply.status_code == 403
        assert reply.json()["permission"] == f"issue profile={profile} ca=issuing"


def signed_headers(key: SoftwareKey, cert: asn1x509.Certificate, method: str, path: str,
                   body: bytes, when: datetime | None = None) -> dict[str, str]:
    return httpsig.sign_request(key, cert, method, path, "", body, when)


def test_api_signed_requests(service: Service, caplog: pytest.LogCaptureFixture,
                             ra_service: tuple[SoftwareKey, asn1x509.Certificate]) -> None:
    authority = service.authority
    officer_key, officer = issue(authority, "RA Officer 1", profile="ra-officer")
    system_key, system = issue(authority, "Business System 1", profile="business-system")
    ra_key, ra_cert = ra_service
    _, victim = issue(authority, "victim of a signed revoke")
    path = f"/api/v1/certificates/{victim.serial_number:X}/revoke"
    body = json.dumps({"reason": "superseded"}).encode()

    with caplog.at_level(logging.WARNING, logger="ca.service.audit"):
        # an officer acts only through the RA; a business system has no principal: 403
        for key, cert in ((officer_key, officer), (system_key, system)):
            refused = service.post(path, body,
                                   headers=signed_headers(key, cert, "POST", path, body))
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert "officers act only through the RA" in service.post(
            path, body, headers=signed_headers(officer_key, officer, "POST", path,
                                               body)).json()["detail"]
        # a signature over a different body, an old date, a foreign certificate: 401
        tampered = signed_headers(ra_key, ra_cert, "POST", path, b"{}")
        assert service.post(path, body, headers=tampered).status_code == 401
        stale = signed_headers(ra_key, ra_cert, "POST", path, body,
                               datetime.now(UTC) - timedelta(minutes=10))
        assert service.post(path, body, headers=stale).status_code == 401
        foreign_key = SoftwareKey.generate("ec-p256")
        forged = signed_headers(foreign_key, ra_cert, "POST", path, body)
        assert service.post(path, body, headers=forged).status_code == 401
    assert len([r for r in caplog.records if r.name == "ca.service.audit"]) == 6

    headers = signed_headers(ra_key, ra_cert, "POST", path, body)
    ok = service.post(path, body, headers=headers)
    assert ok.status_code == 200, ok.text
    assert authority.status(victim.serial_number).status.value == "revoked"
    replayed = service.post(path, body, headers=headers)  # the same signed request again
    assert replayed.status_code == 401 and "replay" in replayed.json()["detail"]

    # a revoked service certificate is locked out
    authority.revoke(ra_cert.serial_number, "affiliationChanged")
    _, other = issue(authority, "second victim")
    path2 = f"/api/v1/certificates/{other.serial_number:X}/revoke"
    reply = service.post(path2, body, headers=signed_headers(ra_key, ra_cert, "POST",
                                                             path2, body))
    assert reply.status_code == 401
    assert "revoked" in reply.json()["detail"]


def test_wrong_method_is_json_405(service: Service) -> None:
    reply = service.get("/tsa")
    assert reply.status_code == 405
    assert reply.json()["code"] == "method_not_allowed"


def test_fast_path_serves_only_fresh_answers(authority: CertificateAuthority) -> None:
    """The in-memory GET path serves an answer only while the OCSP cache would (half its
    validity, same revocation epoch), then a new one is produced."""
    # thisUpdate has whole seconds, so the half-validity window can start up to a second before
    # the first answer: a 4 s validity leaves the second GET at least a second (it raced a 2 s
    # one on a loaded machine)
    config = ServiceConfig(authority=authority, revocation_check_interval=0,
                           ocsp_validity=timedelta(seconds=4))
    app = create_app(config)
    client = app.test_client()
    _, cert = issue(authority, "short validity")
    path = get_path(make_request(cert_id(authority.certificate, cert.serial_number)))
    first = client.get(path)
    assert client.get(path).data == first.data
    assert len(app.wsgi_app.entries) == 1  # type: ignore[attr-defined]
    max_age = int(first.headers["Cache-Control"].split("=")[1].split(",")[0])
    assert 0 <= max_age <= 4
    time.sleep(2.2)
    later = client.get(path).data
    assert later != first.data
    assert ocsp_status(later)[0] == "good"


def test_unloadable_keys_give_protocol_errors_not_http_500(
    authority: CertificateAuthority,
) -> None:
    broken = CertificateAuthority.open(authority.home, passphrase=b"not the passphrase",
                                       audit=AuditLog.at_home(authority.home))
    try:
        app = create_app(ServiceConfig(authority=broken,
                                       tsa_serial_file=authority.home / "tsa-serial-broken"))
        client = app.test_client()
        reply = client.post("/ocsp", data=make_request(cert_id(authority.certificate, 5)))
        assert reply.status_code == 200
        assert ocsp_status(reply.data)[0] == "internal_error"
        query = tsp.TimeStampReq({
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                "hashed_message": digest("sha256", b"x")},
        }).dump()
        reply = client.post("/tsa", data=query)
        assert reply.status_code == 200
        status = TimeStampResp.load(reply.data)["status"]
        assert status["status"].native == "rejection"
        assert set(status["fail_info"].native) == {"system_failure"}
    finally:
        broken.close()


def test_revocation_by_another_process_reaches_ocsp_and_crl_on_both_databases(
    database_url: str, tmp_path: Path,
) -> None:
    """Two CA handles on one database (as two processes have): a revocation through one shows
    in the other's service on the next request, on SQLite and on PostgreSQL."""
    config = tmp_path / "ca.toml"
    config.write_text(EC_CONFIG, encoding="utf-8")
    serving = CertificateAuthority.init(tmp_path / "home", config, database_url=database_url,
                                        audit=AuditLog.at_home(tmp_path / "home"))
    revoker = CertificateAuthority.open(tmp_path / "home", database_url=database_url,
                                        audit=AuditLog.at_home(tmp_path / "home"))
    try:
        app = create_app(ServiceConfig(authority=serving, revocation_check_interval=0))
        client = app.test_client()
        _, cert = issue(serving, "shared database")
        path = get_path(make_request(cert_id(serving.certificate, cert.serial_number)))
        assert ocsp_status(client.get(path).data)[0] == "good"
        assert ocsp_status(client.get(path).data)[0] == "good"  # now cached
        client.get("/crl/issuing.crl")
        revoker.revoke(cert.serial_number, "keyCompromise")
        assert ocsp_status(client.get(path).data)[0] == "revoked"
        crl = asn1crl.CertificateList.load(client.get("/crl/issuing.crl").data)
        assert cert.serial_number in {r["user_certificate"].native
                                      for r in crl["tbs_cert_list"]["revoked_certificates"]}
    finally:
        revoker.close()
        serving.close()


def test_no_audit_record_no_issuance(authority: CertificateAuthority, tmp_path: Path) -> None:
    """When the audit log cannot take the 'attempt' record, nothing is issued (HTTP 503)."""
    from sscard.audit import audit_metadata

    broken_log = AuditLog.open(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    audit_metadata.drop_all(broken_log.engine)  # the log's tables vanish under the CA
    # the CA itself holds the broken log: the guard is in the domain object, not the web layer
    broken = CertificateAuthority.open(authority.home, audit=broken_log)
    app = create_app(ServiceConfig(
        authority=broken, audit_log=broken_log,
        access=ACCESS))
    _, csr = new_csr("never issued")
    issued_before = len(authority.list_certificates(limit=100_000))
    try:
        reply = app.test_client().post("/api/v1/certificates", headers=bearer(),
                                       data=json.dumps({"profile": "business-system",
                                                        "csr": csr.decode()}))
    finally:
        broken.close()
    assert reply.status_code == 503
    assert reply.json is not None and reply.json["code"] == "audit_unavailable"
    assert len(authority.list_certificates(limit=100_000)) == issued_before


def test_service_signers_are_renewed_before_they_expire(authority: CertificateAuthority) -> None:
    from ca.service import PublishedCA, renewal_time

    config = ServiceConfig(authority=authority)
    published = PublishedCA(authority, config)
    first = published.responder
    assert published.responder is first  # kept while the certificate is far from expiry
    not_after = first.signer_cert["tbs_certificate"]["validity"]["not_after"].native
    assert renewal_time(first.signer_cert, timedelta(hours=1)) == not_after - timedelta(days=1)
    assert renewal_time(first.signer_cert, timedelta(days=3)) == not_after - timedelta(days=3)
    published._renew_at = datetime.now(UTC) - timedelta(seconds=1)  # as if near expiry
    second = published.responder
    assert second is not first
    assert published._renew_at > datetime.now(UTC)
