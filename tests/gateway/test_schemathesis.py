"""schemathesis against the gateway's own OpenAPI document (issue 12): generated requests,
valid and invalid, to every endpoint as an authenticated system; zero server errors, and
every answer as the document describes it (status, content type, schema)."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

import pytest
import schemathesis

from sscard.gateway.service import ROUTES, create_app
from sscard.x509.pem import der_to_pem
from tests.gateway.conftest import Rig
from tests.schemathesis_run import MODES, conforms, load


@pytest.fixture(scope="module")
def gateway_schema(rig: Rig) -> schemathesis.BaseSchema:
    # behind a TLS proxy that passes the client certificate: requests need no signature, so
    # generated bodies reach the operations as an authenticated system
    config = dataclasses.replace(rig.config, trusted_client_cert_header="X-Client-Cert")
    # invalid data must be refused with a 4xx: 413 is the documented answer to a batch too long
    return load("/openapi.json", create_app(config), (400, 401, 403, 404, 405, 413, 422))


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("path", [r[0] for r in ROUTES])
def test_gateway_conforms_to_its_document(gateway_schema: schemathesis.BaseSchema, rig: Rig,
                                          path: str, mode: schemathesis.GenerationMode) -> None:
    pem = der_to_pem(rig.systems["employment"].cert.dump(), "CERTIFICATE").decode()
    conforms(gateway_schema[path]["POST"], mode, {"X-Client-Cert": quote(pem, safe="")})
