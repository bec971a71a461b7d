"""schemathesis against the gateway's own OpenAPI document (issue 12): generated requests,
valid and invalid, to every endpoint as an authenticated system; zero server errors, and
every answer as the document describes it (status, content type, schema)."""

from __future__ import annotations

import dataclasses
import os
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from sscard.gateway.service import ROUTES, create_app
from sscard.x509.pem import der_to_pem
from tests.gateway.conftest import Rig

#: bounded: a few seconds per endpoint and mode
EXAMPLES = int(os.environ.get("SSCARD_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]


@pytest.fixture(scope="module")
def gateway_schema(rig: Rig) -> schemathesis.BaseSchema:
    # behind a TLS proxy that passes the client certificate: requests need no signature, so
    # generated bodies reach the operations as an authenticated system
    config = dataclasses.replace(rig.config, trusted_client_cert_header="X-Client-Cert")
    # invalid data must be refused with a 4xx: 413 is the documented answer to a batch too long
    st_config = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
        "expected-statuses": ["400", "401", "403", "404", "405", "413", "422"]}}})
    return schemathesis.openapi.from_wsgi("/openapi.json", create_app(config),
                                          config=st_config)


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
@pytest.mark.parametrize("path", [r[0] for r in ROUTES])
def test_gateway_conforms_to_its_document(gateway_schema: schemathesis.BaseSchema, rig: Rig,
                                          path: str, mode: schemathesis.GenerationMode) -> None:
    operation = gateway_schema[path]["POST"]
    pem = der_to_pem(rig.systems["employment"].cert.dump(), "CERTIFICATE").decode()
    headers = {"X-Client-Cert": quote(pem, safe="")}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()
