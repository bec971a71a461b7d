"""The OCSP hot paths of the CA service: answered in front of Flask (``ca.service.OcspFront``),
the request parsed once even when two CAs are published (the root online beside the issuing
CA), and the same answers and HTTP headers as RFC 5019 asks."""

from __future__ import annotations

import base64
import os
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from asn1crypto import ocsp as asn1ocsp
from flask import Flask

import ca.ocsp
import ca.service
from ca.authority import CertificateAuthority
from ca.service import MAX_PROTOCOL_BODY, ServiceConfig, create_app
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from tests.ca.test_ocsp import cert_id, make_request
from tests.ca.test_service_cli import config_text


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[CertificateAuthority, CertificateAuthority, int]]:
    base = tmp_path_factory.mktemp("front")
    (base / "ca.toml").write_text(config_text("ec-p256"), encoding="utf-8")
    home = base / "home"
    issuing = CertificateAuthority.init(home, base / "ca.toml", audit=AuditLog.at_home(home))
    root = CertificateAuthority.open(home, name="root", audit=AuditLog.at_home(home))
    csr = CsrBuilder().subject(parse_name("CN=Front,O=人社厅,C=CN")).sign(
        SoftwareKey.generate("ec-p256"))
    serial = int(issuing.issue_from_csr(csr, "business-system").serial)
    yield issuing, root, serial
    root.close()
    issuing.close()


@pytest.fixture
def app(authorities: tuple[CertificateAuthority, CertificateAuthority, int]) -> Flask:
    issuing, root, _ = authorities
    return create_app(ServiceConfig(authority=issuing, other_authorities=(root,)))


def _status(der: bytes) -> str:
    response = asn1ocsp.OCSPResponse.load(der)
    if response["response_status"].native != "successful":
        return str(response["response_status"].native)
    single = response.basic_ocsp_response["tbs_response_data"]["responses"][0]
    return str(single["cert_status"].name)


def _get_path(request: bytes) -> str:
    return "/ocsp/" + urllib.parse.quote(base64.b64encode(request).decode(), safe="")


def test_ocsp_requests_never_enter_the_flask_request_cycle(
        app: Flask, authorities: tuple[CertificateAuthority, CertificateAuthority, int]
) -> None:
    issuing, root, serial = authorities
    entered: list[str] = []
    app.before_request(lambda: entered.append("flask") and None)
    client = app.test_client()
    for _ in range(2):  # a miss, then a hit of the GET cache
        plain = make_request(cert_id(issuing.certificate, serial))
        assert _status(client.get(_get_path(plain)).data) == "good"
        nonce = make_request(cert_id(issuing.certificate, serial), nonce=os.urandom(16))
        assert _status(client.post("/ocsp", data=nonce).data) == "good"
        assert _status(client.post("/ocsp/", data=nonce).data) == "good"
        head = client.head(_get_path(plain))
        assert head.status_code == 200 and head.data == b""
    # the root's certificate of the issuing CA: the root answers, through the same front
    for_root = make_request(cert_id(root.certificate, issuing.certificate.serial_number))
    assert _status(client.post("/ocsp", data=for_root).data) == "good"
    assert entered == []
    assert client.get("/certs/chain.pem").status_code == 200
    assert entered == ["flask"]  # everything else still goes through Flask


def test_the_request_is_parsed_once_with_two_cas_published(
        app: Flask, authorities: tuple[CertificateAuthority, CertificateAuthority, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    issuing, _, serial = authorities
    calls: list[bytes] = []
    real = ca.ocsp.parse_request

    def counted(request_der: bytes) -> Any:  # the real parser, counted
        calls.append(request_der)
        return real(request_der)

    monkeypatch.setattr(ca.ocsp, "parse_request", counted)
    monkeypatch.setattr(ca.service, "parse_request", counted)
    client = app.test_client()
    nonce = make_request(cert_id(issuing.certificate, serial), nonce=os.urandom(16))
    assert _status(client.post("/ocsp", data=nonce).data) == "good"  # responders made here
    calls.clear()
    assert _status(client.post("/ocsp", data=nonce).data) == "good"
    assert calls == [nonce]


@pytest.mark.parametrize("body", [b"", b"\x30\x00", b"\x30" * (MAX_PROTOCOL_BODY + 1)])
def test_bad_posts_get_an_ocsp_error_with_http_200(app: Flask, body: bytes) -> None:
    reply = app.test_client().post("/ocsp", data=body)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/ocsp-response"
    assert reply.headers["Cache-Control"] == "no-cache, no-store"
    assert _status(reply.data) == "malformed_request"


def test_get_answers_carry_rfc5019_caching_headers(
        app: Flask, authorities: tuple[CertificateAuthority, CertificateAuthority, int]
) -> None:
    issuing, _, serial = authorities
    client = app.test_client()
    path = _get_path(make_request(cert_id(issuing.certificate, serial)))
    first, second = client.get(path), client.get(path)  # worked out, then from memory
    for reply in (first, second):
        assert reply.headers["Content-Type"] == "application/ocsp-response"
        assert reply.headers["Cache-Control"].startswith("max-age=")
        assert "public, no-transform, must-revalidate" in reply.headers["Cache-Control"]
        assert reply.headers["ETag"] and reply.headers["Expires"]
        assert int(reply.headers["Content-Length"]) == len(reply.data)
    assert first.data == second.data
