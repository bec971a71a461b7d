"""What every sscard HTTP service answers for its operators: ``/health``, ``/ready``, ``/metrics``.

- ``GET /health``: the process is up (liveness); never touches a dependency.
- ``GET /ready``: the service can do its work now (readiness): each named check runs (database
  reachable, KMC unsealed, ...); 200 ``{"status": "ready", "checks": {...}}`` or 503 problem+json
  ``not_ready`` naming what failed. Load balancers route on it.
- ``GET /metrics``: Prometheus text format (``prometheus_client``): requests and latency per
  route (the URL rule, not the raw path, so the label set stays bounded), and each service's own
  counters (issuance, revocation, OCSP cache hits and misses). Under gunicorn set
  ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory so that ``/metrics`` adds up every worker;
  without it each worker reports its own. Expose ``/metrics`` to the monitoring network only
  (the reverse proxy's job): it holds counts, never names or keys.

``install(app, service, checks)`` adds the three endpoints and the request metrics to a Flask app;
the metrics themselves are in ``sscard.metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask, Response, jsonify, request

from sscard import problem
from sscard.metrics import LATENCY, REQUESTS, metrics_text

#: endpoint names, for services that list who may call what (the RA's access table)
ENDPOINTS = ("ops_health", "ops_ready", "ops_metrics")
PATHS = frozenset({"/health", "/ready", "/metrics"})

_ROUTE = "sscard.route"
UNMATCHED = "<unmatched>"

Check = Callable[[], object]


class _Measure:
    """WSGI middleware timing every request (also those answered before Flask routes them)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], service: str) -> None:
        self.app = app
        self.service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)  # transparent: the wrapped middleware's attributes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start = time.perf_counter()
        status: list[str] = []

        def capture(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(code.split(" ", 1)[0])
            return start_response(code, headers, exc_info)

        try:
            return self.app(environ, capture)
        finally:
            route = environ.get(_ROUTE, UNMATCHED)
            method = environ.get("REQUEST_METHOD", "-")
            LATENCY.labels(self.service, route, method).observe(time.perf_counter() - start)
            REQUESTS.labels(self.service, route, method, status[0] if status else "500").inc()


def mark_route(environ: dict[str, Any], route: str) -> None:
    """For middleware that answers without Flask (the CA's OCSP fast path)."""
    environ[_ROUTE] = route


def install(app: Flask, service: str, checks: Mapping[str, Check] | None = None,
            health: Callable[[], Mapping[str, Any]] | None = None) -> None:
    """Add ``/health``, ``/ready`` and ``/metrics`` and per-route request metrics to ``app``.

    ``checks``: name -> callable that raises (or returns False) when the service is not
    ready. ``health``: extra fields for ``/health`` (cheap, no I/O).
    """
    checks = dict(checks or {})

    @app.after_request
    def _route(response: Response) -> Response:
        rule = request.url_rule
        request.environ[_ROUTE] = rule.rule if rule is not None else UNMATCHED
        return response

    def health_view() -> Response:
        return jsonify({"status": "ok", "service": service, **(health() if health else {})})

    def ready_view() -> Response:
        results: dict[str, str] = {}
        failed: list[str] = []
        for name, check in checks.items():
            try:
                ok = check() is not False
                why = "" if ok else "not ready"
            except Exception as exc:
                ok, why = False, f"{type(exc).__name__}: {str(exc)[:200]}"
            results[name] = "ok" if ok else why
            if not ok:
                failed.append(f"{name} ({why})")
        if failed:
            return problem.response(problem.Problem(
                503, "not_ready", f"{service} is not ready: {'; '.join(failed)}"))
        return jsonify({"status": "ready", "service": service, "checks": results})

    def metrics_view() -> Response:
        body, content_type = metrics_text()
        return Response(body, content_type=content_type)

    for path, endpoint, view in (("/health", "ops_health", health_view),
                                 ("/ready", "ops_ready", ready_view),
                                 ("/metrics", "ops_metrics", metrics_view)):
        app.add_url_rule(path, endpoint, view, methods=["GET"])
    app.wsgi_app = _Measure(app.wsgi_app, service)  # type: ignore[method-assign]


def database_check(engine: Any) -> Check:
    """A readiness check: the database answers ``SELECT 1``."""
    import sqlalchemy as sa

    def check() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    return check
