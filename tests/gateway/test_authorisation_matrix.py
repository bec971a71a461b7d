"""Issue 12 authorisation matrix, gateway part: every kind of credential against every
gateway operation. Only a registered business-system certificate gets in, and only to the
operations its system is allowed; everything else is refused (zero unauthorised successes)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from sscard import httpsig as rs
from sscard.gateway.config import (
    BUSINESS_SYSTEM_POLICY,
    CARDHOLDER_ENCRYPT_POLICY,
    CARDHOLDER_SIGN_POLICY,
)
from sscard.gateway.service import ROUTES, create_app
from tests.cms.pki import Issued, make_ca, make_leaf
from tests.gateway.conftest import Rig, policies

RA_OFFICER_POLICY = "1.2.156.10260.4.2.2.1"  # ca/profiles/ra-officer.toml
DOC = base64.b64encode(b"doc").decode()
CERT = "MIIB"  # schema-valid base64; what it holds does not matter before authorisation
BODIES: dict[str, dict[str, Any]] = {
    "/v1/sign": {"key": "hr-sign", "content": DOC},
    "/v1/sign/batch": {"key": "hr-sign", "items": [{"content": DOC}]},
    "/v1/verify": {"signed": DOC},
    "/v1/verify/batch": {"items": [{"signed": DOC}]},
    "/v1/encrypt": {"content": DOC, "recipients": [CERT]},
    "/v1/decrypt": {"enveloped": DOC},
    "/v1/certificates/status": {"certificate": CERT},
    "/v1/cardholder/challenge": {},
    "/v1/cardholder/verify": {"challenge_id": "x", "signature": DOC, "certificate": CERT},
}


def _credentials(rig: Rig) -> dict[str, Issued]:
    ca = rig.pki.ca
    client = ["client_auth"]  # hostile: every one of them claims client authentication
    return {
        "cardholder-sign": make_leaf("CN=employment,serialNumber=1,C=CN", ca, ssn="1", eku=client,
                                     extra=policies(CARDHOLDER_SIGN_POLICY)),
        "cardholder-encrypt": make_leaf("CN=employment,C=CN", ca, eku=client,
                                        key_usage=("key_agreement", "digital_signature"),
                                        extra=policies(CARDHOLDER_ENCRYPT_POLICY)),
        "ra-officer": make_leaf("CN=employment,O=RA,C=CN", ca, eku=client,
                                extra=policies(RA_OFFICER_POLICY)),
        "ocsp-signer": make_leaf("CN=employment OCSP,C=CN", ca, eku=["ocsp_signing", *client]),
        "tsa": make_leaf("CN=employment TSA,C=CN", ca, eku=["time_stamping"]),
        "tls-server": make_leaf("CN=employment,C=CN", ca, eku=["server_auth", *client]),
        "sub-ca": make_ca("CN=employment Sub CA,C=CN", ca, extra=[
            ("extended_key_usage", client, False),
            *policies(BUSINESS_SYSTEM_POLICY)]),
        "issuing-ca": ca,
        "root": rig.pki.root,
        "business-system, unregistered": rig.systems["unregistered"],
        "business-system, other CA": rig.outsider,
    }


@pytest.fixture(scope="module")
def client(rig: Rig) -> FlaskClient:
    return create_app(rig.config).test_client()


def _call(client: FlaskClient, who: Issued | None, path: str,
          extra_headers: dict[str, str] | None = None) -> int:
    body = json.dumps(BODIES[path]).encode()
    headers = {"Content-Type": "application/json", **(extra_headers or {})}
    if who is not None:
        headers.update(rs.sign_request(who.key, who.cert, "POST", path, "", body))
    return int(client.post(path, data=body, headers=headers).status_code)


def test_no_credential_but_a_registered_system_gets_in(rig: Rig, client: FlaskClient) -> None:
    successes = []
    for name, who in _credentials(rig).items():
        for path, *_ in ROUTES:
            status = _call(client, who, path)
            if status != 401:
                successes.append((name, path, status))
    for token_header in ({"Authorization": "Bearer s3cret-token-for-the-ra-0123456789"},
                         {"X-Client-Cert": "not honoured without the proxy setting"}, {}):
        for path, *_ in ROUTES:
            status = _call(client, None, path, token_header)
            if status != 401:
                successes.append((str(token_header), path, status))
    assert successes == []


def test_a_registered_system_only_reaches_its_operations(rig: Rig, client: FlaskClient) -> None:
    allowed = {"verify", "status"}  # the rig's policy for 'fund'
    for path, operation, *_ in ROUTES:
        status = _call(client, rig.systems["fund"], path)
        if operation in allowed:
            assert status not in (401, 403), (path, status)
        else:
            assert status == 403, (path, status)
