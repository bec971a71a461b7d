"""``ca.service.ApiFront``: issuance answered before Flask must refuse everything the Flask
route refuses, with the same problem document, headers and audit record, and answer what it
accepts with the same body and headers.

Each attack is sent twice, once to the front (with Flask out of reach: a front that passed it
on would fail the test) and once to the Flask route alone, and the two answers compared:
no credential, an unknown token, a signature by a key that is not the certificate's (someone
else's certificate), a caller without a principal, a replayed signed request, a body larger
than the limit, a deeply nested body, a body that is not an object, a profile the principal
may not use, an attested proof of possession in a request that is not signed, and a body sent
as another content type.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import test_service
from asn1crypto import x509 as asn1x509
from test_service import ACCESS, bearer, issue, new_csr
from werkzeug.test import Client, EnvironBuilder, TestResponse, run_wsgi_app

from ca.authority import CertificateAuthority
from ca.authorization import ApiOperation, CertificateIdentity, Principal
from ca.service import ApiFront, ServiceConfig, create_app
from sscard import httpsig
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey
from sscard.metrics import REQUESTS

ISSUE = "/api/v1/certificates"
BATCH = "/api/v1/certificates/batch"


class Apps:
    """The same CA service reached through the front alone, and through Flask alone."""

    def __init__(self, app: Any) -> None:
        layer = app.wsgi_app
        while not isinstance(layer, ApiFront):
            layer = layer.app
        self.state = layer.state
        self.flask = Client(layer.app)
        self.front = Client(ApiFront(_no_flask, layer.state))


def _no_flask(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    raise AssertionError(f"the front passed {environ['REQUEST_METHOD']} "
                         f"{environ['PATH_INFO']} on to Flask")


# test_service's P-256 CA and its audit log, module-scoped: this module gets a CA of its own
authority = test_service.authority
audit_log = test_service.audit_log


@pytest.fixture(scope="module")
def ra_identity(authority: CertificateAuthority) -> tuple[SoftwareKey, asn1x509.Certificate]:
    return issue(authority, "ra-service", profile="service")


@pytest.fixture(scope="module")
def apps(authority: CertificateAuthority, audit_log: AuditLog,
         ra_identity: tuple[SoftwareKey, asn1x509.Certificate]) -> Apps:
    ra = Principal("ra", frozenset({ApiOperation.ISSUE, ApiOperation.ATTEST_POP}),
                   frozenset({"business-system"}), frozenset({"issuing"}),
                   certificate=CertificateIdentity(
                       "service", hashlib.sha256(ra_identity[1].dump()).hexdigest()))
    config = ServiceConfig(authority=authority, audit_log=audit_log,
                           access=ACCESS.with_principal(ra), revocation_check_interval=0)
    return Apps(create_app(config))


def _csr_body(profile: str = "business-system", cn: str = "front test") -> bytes:
    return json.dumps({"profile": profile, "csr": new_csr(cn)[1].decode()}).encode()


def _post(client: Client, path: str, body: bytes, headers: dict[str, str],
          content_type: str = "application/json") -> TestResponse:
    return client.post(path, data=body, headers=headers, content_type=content_type)


def _audit_since(audit_log: AuditLog, since: int) -> list[tuple[str, str, str, str]]:
    return [(r.record.actor, r.record.action, r.record.object, r.record.outcome)
            for r in audit_log.records(since + 1)]


def _same_refusal(front: TestResponse, flask: TestResponse) -> None:
    assert front.status == flask.status
    assert front.get_json() == flask.get_json()
    assert sorted(front.headers.items()) == sorted(flask.headers.items())


def _both(apps: Apps, audit_log: AuditLog, send: Callable[[Client], TestResponse],
          ) -> tuple[TestResponse, TestResponse]:
    """The front's answer and Flask's, and the same audit records written by each."""
    before = audit_log.size()
    front = send(apps.front)
    middle = audit_log.size()
    flask = send(apps.flask)
    assert _audit_since(audit_log, before)[: middle - before] == _audit_since(audit_log, middle)
    return front, flask


def _signed(key: SoftwareKey, cert: asn1x509.Certificate, path: str,
            body: bytes) -> dict[str, str]:
    return httpsig.sign_request(key, cert, "POST", path, "", body)


@pytest.mark.parametrize("path", [ISSUE, BATCH])
@pytest.mark.parametrize("attack", ["no credential", "unknown token", "foreign key",
                                    "no principal", "oversized", "deeply nested",
                                    "not an object", "forbidden profile"])
def test_the_front_refuses_what_flask_refuses(
    apps: Apps, audit_log: AuditLog, authority: CertificateAuthority,
    ra_identity: tuple[SoftwareKey, asn1x509.Certificate], path: str, attack: str,
) -> None:
    ra_cert = ra_identity[1]
    body = _csr_body()
    if path == BATCH:
        body = json.dumps({"profile": "business-system", "requests": [
            {"csr": new_csr("batch entry")[1].decode()}]}).encode()
    headers: Callable[[bytes], dict[str, str]] = lambda _: bearer()  # noqa: E731
    if attack == "no credential":
        headers = lambda _: {}  # noqa: E731
    elif attack == "unknown token":
        headers = lambda _: bearer("y" * 40)  # noqa: E731
    elif attack == "foreign key":  # the RA's certificate, signed by someone else's key
        foreign = SoftwareKey.generate("ec-p256")
        headers = lambda b: _signed(foreign, ra_cert, path, b)  # noqa: E731
    elif attack == "no principal":
        system_key, system = issue(authority, "Business System 9")
        headers = lambda b: _signed(system_key, system, path, b)  # noqa: E731
    elif attack == "oversized":
        body = b'{"profile": "' + b"x" * (300 * 1024) + b'"}'
    elif attack == "deeply nested":
        body = b"[" * 5000 + b"]" * 5000
    elif attack == "not an object":
        body = b'["profile", "business-system"]'
    elif attack == "forbidden profile":
        body = body.replace(b'"business-system"', b'"cardholder-sign"')
    front, flask = _both(apps, audit_log, lambda c: _post(c, path, body, headers(body)))
    assert front.status_code >= 400, front.get_data(as_text=True)
    _same_refusal(front, flask)
    assert front.headers["Content-Type"] == "application/problem+json"
    assert front.headers["Cache-Control"] == "no-store"


def test_a_replayed_signed_request_is_refused_by_the_front(
    apps: Apps, audit_log: AuditLog, ra_identity: tuple[SoftwareKey, asn1x509.Certificate],
) -> None:
    ra_key, ra_cert = ra_identity
    answers = {}
    for name in ("front", "flask"):
        client = getattr(apps, name)
        body = _csr_body(cn=f"replayed via {name}")
        headers = _signed(ra_key, ra_cert, ISSUE, body)
        first = _post(client, ISSUE, body, headers)
        assert first.status_code == 201, first.get_data(as_text=True)
        answers[name] = _post(client, ISSUE, body, headers)
    assert answers["front"].status_code == 401
    assert "replay" in answers["front"].get_json()["detail"]
    _same_refusal(answers["front"], answers["flask"])


def test_attested_possession_needs_a_signed_request_at_the_front(
    apps: Apps, audit_log: AuditLog,
) -> None:
    csr = new_csr("attested by a token")[1].decode()
    body = json.dumps({"profile": "business-system", "requests": [
        {"csr": csr, "attested_key_sha256": "00" * 32}]}).encode()
    front, flask = _both(apps, audit_log, lambda c: _post(c, BATCH, body, bearer()))
    assert front.status_code == 403
    assert front.get_json()["permission"] == "attest-pop profile=business-system"
    _same_refusal(front, flask)


def _batch_body(cn: str) -> bytes:
    return json.dumps({"profile": "business-system",
                       "requests": [{"csr": new_csr(cn)[1].decode()}]}).encode()


def test_the_front_answers_issuance_as_flask_does(
    apps: Apps, ra_identity: tuple[SoftwareKey, asn1x509.Certificate],
) -> None:
    """Accepted requests, signed and by token, single and batch, whatever the content type
    (the Flask route never looked at it): the same status, headers and body shape."""
    ra_key, ra_cert = ra_identity
    for path, content_type, signed in ((ISSUE, "application/json", True),
                                       (ISSUE, "text/plain", True),
                                       (ISSUE, "application/json", False),
                                       (BATCH, "application/json", True)):
        answers = []
        for client in (apps.front, apps.flask):
            body = _csr_body(cn="issued") if path == ISSUE else _batch_body("issued")
            headers = _signed(ra_key, ra_cert, path, body) if signed else bearer()
            answers.append(_post(client, path, body, headers, content_type))
        front, flask = answers
        assert front.status == flask.status, front.get_data(as_text=True)
        assert front.status_code == (201 if path == ISSUE else 200)
        assert {k for k, _ in front.headers.items()} == {k for k, _ in flask.headers.items()}
        assert front.headers["Content-Type"] == flask.headers["Content-Type"]
        front_json, flask_json = front.get_json(), flask.get_json()
        if path == BATCH:
            front_json, flask_json = front_json["results"][0], flask_json["results"][0]
        assert front_json.keys() == flask_json.keys() == {"serial", "profile", "certificate"}
        assert front_json["serial"] != flask_json["serial"]


def test_a_body_without_a_length_goes_to_flask(apps: Apps) -> None:
    """A chunked body (no Content-Length) is Flask's to read and judge, not the front's."""
    environ = EnvironBuilder(ISSUE, method="POST", data=_csr_body(cn="chunked"),
                             headers=bearer()).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True
    with pytest.raises(AssertionError, match="passed POST /api/v1/certificates on"):
        ApiFront(_no_flask, apps.state)(environ, lambda *_: None)


def test_a_body_shorter_than_its_length_is_refused_not_judged_in_part(apps: Apps) -> None:
    """Attack: a Content-Length larger than the body sent (a client gone, or a proxy cut);
    nothing of it is read as a request, by the front as by Flask."""
    body = _csr_body(cn="cut short")
    answers = []
    for client in (apps.front, apps.flask):
        environ = EnvironBuilder(ISSUE, method="POST", data=body,
                                 headers=bearer()).get_environ()
        environ["CONTENT_LENGTH"] = str(len(body) + 10)
        chunks, status, _ = run_wsgi_app(client.application, environ)
        answers.append((status, json.loads(b"".join(chunks))))
    (front_status, front), (flask_status, flask) = answers
    assert front_status.startswith("400") and flask_status.startswith("400")
    assert front["code"] == flask["code"] == "bad_request"
    assert "ended after" in front["detail"]


def test_front_requests_are_measured_under_their_route(authority: CertificateAuthority) -> None:
    app = create_app(ServiceConfig(authority=authority, access=ACCESS))
    counter = REQUESTS.labels("ca", ISSUE, "POST", "401")
    before = counter._value.get()
    reply = Client(app).post(ISSUE, data=_csr_body(), content_type="application/json")
    assert reply.status_code == 401
    assert counter._value.get() == before + 1
