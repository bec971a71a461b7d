"""schemathesis against the RA enrollment API's OpenAPI document (ra/openapi.py): generated
requests, valid and invalid, as an authenticated station; zero server errors, and every
answer as the document describes it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

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

from ra.openapi import SPEC
from ra.web import WebConfig, create_app
from tests.ra.rig import RaRig, make_rig

EXAMPLES = int(os.environ.get("SSCARD_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
OPERATIONS = [(path, method.upper()) for path, item in SPEC["paths"].items() for method in item]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaRig]:
    r = make_rig(tmp_path_factory.mktemp("ra-schemathesis"))
    yield r
    r.close()


@pytest.fixture(scope="module")
def ra_schema(rig: RaRig) -> schemathesis.BaseSchema:
    app = create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False))
    config = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
        "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "422"]}}})
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
@pytest.mark.parametrize("path,method", OPERATIONS)
def test_ra_api_conforms_to_its_document(ra_schema: schemathesis.BaseSchema, rig: RaRig,
                                         path: str, method: str,
                                         mode: schemathesis.GenerationMode) -> None:
    operation = ra_schema[path][method]
    headers = {"Authorization": f"Bearer {rig.api_token}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()
