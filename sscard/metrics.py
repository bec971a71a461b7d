"""The Prometheus metrics of the sscard services (``prometheus_client``), defined once per
process; ``sscard.httpops`` serves them at ``/metrics``. Under gunicorn, set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory so that a scrape adds up every worker."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter("sscard_http_requests_total", "HTTP requests answered",
                   ["service", "route", "method", "status"])
LATENCY = Histogram("sscard_http_request_duration_seconds", "HTTP request latency",
                    ["service", "route", "method"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
ISSUED = Counter("sscard_certificates_issued_total", "certificates issued", ["ca", "profile"])
REVOKED = Counter("sscard_certificates_revoked_total", "certificates revoked", ["ca", "reason"])
IDP_LOGINS = Counter("sscard_idp_logins_total",
                     "card logins at the identity provider, by outcome (success or the token's "
                     "refusal code)", ["outcome"])
OCSP_CACHE = Counter("sscard_ocsp_cache_lookups_total",
                     "OCSP answers looked up in a cache (hit ratio: hit / all)",
                     ["result"])


def metrics_text() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
