"""Issue 12 finding 11 at the gateway: bodies are parsed with a depth limit and validated
against the schema the OpenAPI document publishes; wrong types are refused, not guessed; a
10 MB PEM body is refused in under a second."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from sscard import httpsig as rs
from sscard.gateway.service import create_app
from sscard.x509.pem import der_to_pem
from tests.gateway.conftest import Rig


@pytest.fixture(scope="module")
def client(rig: Rig) -> FlaskClient:
    # the production default size limit (10 MiB), not the rig's small one
    config = dataclasses.replace(rig.config, max_request_bytes=10 * 1024 * 1024)
    return create_app(config).test_client()


def _post(rig: Rig, client: FlaskClient, path: str, data: bytes, signed: bool = True) -> Any:
    s = rig.systems["employment"]
    headers = {"Content-Type": "application/json"}
    if signed:
        headers.update(rs.sign_request(s.key, s.cert, "POST", path, "", data))
    return client.post(path, data=data, headers=headers)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_deeply_nested_json_is_a_clear_400(rig: Rig, client: FlaskClient) -> None:
    deep = b'{"key": "hr-sign", "content": "", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = _post(rig, client, "/v1/sign", deep)
    assert answer.status_code == 400, answer.json
    assert "nested more than" in answer.json["detail"]
    # refused before any parsing when the caller is not authenticated
    assert _post(rig, client, "/v1/sign", deep, signed=False).status_code == 401


@pytest.mark.parametrize("path,body,words", [
    ("/v1/certificates/status", {"certificate": "AA==", "chain": 5},
     "'chain' must be of type array, not integer"),
    ("/v1/sign", {"key": "hr-sign", "content": "AA==", "detached": "no"},
     "'detached' must be of type boolean, not string"),
    ("/v1/sign", {"key": "hr-sign", "content": "AA==", "timestamp": 1},
     "'timestamp' must be of type boolean, not integer"),
    ("/v1/verify", {"signed": "AA==", "return_content": "false"},
     "'return_content' must be of type boolean"),
    ("/v1/sign", {"key": "hr-sign", "content": "AA==", "detatched": True},
     "'detatched' was unexpected"),
    ("/v1/encrypt", {"content": "AA==", "recipients": "AA=="}, "'recipients' must be of type"),
    ("/v1/sign", {"key": "hr-sign", "content": "not base64!"}, "'content' is not valid base64"),
    ("/v1/sign", [1, 2], "the body must be of type object, not array"),
    ("/v1/cardholder/verify", {"challenge_id": 7, "signature": "AA==", "certificate": "AA=="},
     "'challenge_id' must be of type string"),
])
def test_wrong_types_are_refused_and_named(rig: Rig, client: FlaskClient, path: str,
                                           body: Any, words: str) -> None:
    answer = _post(rig, client, path, json.dumps(body).encode())
    assert answer.status_code == 400, answer.json
    assert answer.json["code"] == "BAD_REQUEST"
    assert words in answer.json["detail"], answer.json


@pytest.mark.parametrize("data,words", [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{", "not JSON"),
    (b"", "not JSON"),
])
def test_not_json_at_all(rig: Rig, client: FlaskClient, data: bytes, words: str) -> None:
    answer = _post(rig, client, "/v1/verify", data)
    assert answer.status_code == 400 and words in answer.json["detail"]


def test_a_10_mb_pem_body_is_refused_in_under_a_second(rig: Rig,
                                                        client: FlaskClient) -> None:
    pem = der_to_pem(os.urandom(7 * 1024 * 1024), "CERTIFICATE")
    bodies = {
        "JSON": json.dumps({"certificate": _b64(pem)[:10_000_000]}).encode(),
        "raw PEM": pem + pem[: 10_000_000 - len(pem)],
    }
    for what, body in bodies.items():
        assert 9_000_000 < len(body) <= 10 * 1024 * 1024, what
        # CPU time, not wall time: the guard is against work that grows faster than
        # the body, and a loaded machine must not fail it
        started = time.process_time()
        answer = _post(rig, client, "/v1/certificates/status", body)
        spent = time.process_time() - started
        assert answer.status_code == 400, (what, answer.json)
        assert spent < 1.0, f"{what}: {spent:.2f} s of CPU"


def test_a_pem_certificate_inside_the_json_is_read_linearly(rig: Rig,
                                                             client: FlaskClient) -> None:
    # within the documented size: a certificate given as base64 of its PEM still works
    pem = der_to_pem(rig.cardholder.cert.dump(), "CERTIFICATE")
    answer = _post(rig, client, "/v1/certificates/status",
                   json.dumps({"certificate": _b64(pem)}).encode())
    assert answer.status_code == 200 and answer.json["status"] == "good", answer.json
