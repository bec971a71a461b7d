"""The one way the suite runs schemathesis against a service's OpenAPI document: bounded
examples, the same checks for every service, each operation in every generation mode."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

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

#: bounded: a few seconds per endpoint and mode
EXAMPLES = int(os.environ.get("SSCARD_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
MODES = list(schemathesis.GenerationMode)


def load(document_path: str, app: Any, refusals: Sequence[int]) -> schemathesis.BaseSchema:
    """The document served by the WSGI ``app``; invalid data must be answered with one of
    ``refusals`` (the service's documented 4xx answers)."""
    config = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
        "expected-statuses": [str(status) for status in refusals]}}})
    return schemathesis.openapi.from_wsgi(document_path, app, config=config)


def conforms(operation: Any, mode: schemathesis.GenerationMode,
             headers: Mapping[str, str]) -> None:
    """Generated requests to ``operation``, sent with ``headers``: every check holds."""
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=dict(headers), checks=CHECKS)

    run()
