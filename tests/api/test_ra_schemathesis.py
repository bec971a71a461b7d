"""schemathesis against the RA enrollment API's OpenAPI document (ra/openapi.py): generated
requests, valid and invalid, as an authenticated station; zero server errors, and every
answer as the document describes it."""

from __future__ import annotations

import secrets

import pytest
import schemathesis

from ra.openapi import SPEC
from ra.web import WebConfig, create_app
from tests.ra.rig import RaRig
from tests.schemathesis_run import MODES, conforms, load

OPERATIONS = [(path, method.upper()) for path, item in SPEC["paths"].items() for method in item]


@pytest.fixture(scope="module")
def ra_schema(rig: RaRig) -> schemathesis.BaseSchema:
    app = create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False))
    return load("/api/v1/openapi.json", app, (400, 401, 403, 404, 405, 409, 413, 422))


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("path,method", OPERATIONS)
def test_ra_api_conforms_to_its_document(ra_schema: schemathesis.BaseSchema, rig: RaRig,
                                         path: str, method: str,
                                         mode: schemathesis.GenerationMode) -> None:
    conforms(ra_schema[path][method], mode, {"Authorization": f"Bearer {rig.api_token}"})
