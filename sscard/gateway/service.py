"""The gateway HTTP service (数字证书应用支撑平台): a Flask app factory.

Every endpoint except ``/openapi.json``, ``/health``, ``/ready`` and ``/metrics``
(``sscard.httpops``) authenticates the calling business system (mutual TLS or a request
signature), checks its authorisation for the operation, and records the call (who, what,
outcome; never document content). Errors are RFC 9457 ``application/problem+json`` with stable
codes (``sscard.problem``), e.g. ``"code": "FORBIDDEN"``.

Run it under a TLS server that asks for client certificates (``sscard gateway serve``, or
gunicorn with ``--cert-reqs 2``) or plain behind the caller-signature scheme.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from sscard import httpops
from sscard.audit.errors import AuditError, AuditOutcomeNotRecorded
from sscard.clock import Clock, system_clock
from sscard.fetch import request_budget
from sscard.gateway.audit import MemoryRecorder, Recorder
from sscard.gateway.caller import Caller
from sscard.gateway.challenges import ChallengeStore
from sscard.gateway.config import GatewayConfig
from sscard.gateway.core import Gateway, Json
from sscard.gateway.errors import GatewayError, bad_request
from sscard.gateway.openapi import openapi_document
from sscard.httpsig import SqlReplayStore
from sscard.jsonbody import BodySchema, JsonBodyError
from sscard.problem import Problem, ProblemTable

log = logging.getLogger(__name__)

Handler = Callable[[Caller, Json], dict[str, Any]]

#: (path, operation a system must be allowed, audit action, Gateway method name)
ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("/v1/sign", "sign", "gateway.sign", "sign"),
    ("/v1/sign/batch", "sign", "gateway.sign_batch", "sign_batch"),
    ("/v1/verify", "verify", "gateway.verify", "verify"),
    ("/v1/verify/batch", "verify", "gateway.verify_batch", "verify_batch"),
    ("/v1/encrypt", "encrypt", "gateway.encrypt", "encrypt"),
    ("/v1/decrypt", "decrypt", "gateway.decrypt", "decrypt"),
    ("/v1/certificates/status", "status", "gateway.status", "status"),
    ("/v1/cardholder/challenge", "cardholder", "gateway.cardholder_challenge", "new_challenge"),
    ("/v1/cardholder/verify", "cardholder", "gateway.cardholder_verify", "cardholder_verify"),
)


def _audit_problem(exc: Exception) -> Problem:
    # no audit record, no operation: the caller may retry once the log is back
    log.error("audit log: %s", exc)
    if isinstance(exc, AuditOutcomeNotRecorded):
        # the attempt is in the log and the operation ran: a blind retry would repeat it
        return Problem(500, "OUTCOME_NOT_RECORDED",
                       "the operation ran (its attempt is in the audit log) but its outcome "
                       "could not be recorded; check before repeating it")
    return Problem(503, "AUDIT_UNAVAILABLE",
                   "the audit log cannot record the call; nothing was done")


def _problems(config: GatewayConfig) -> ProblemTable:
    """The one place the gateway turns an error into an HTTP answer (RFC 9457)."""
    return ProblemTable({
        GatewayError: lambda exc: (exc.status, exc.code),  # type: ignore[attr-defined]
        RequestEntityTooLarge: lambda _exc: Problem(
            413, "PAYLOAD_TOO_LARGE", f"requests are limited to {config.max_request_bytes} bytes"),
        NotFound: (404, "NOT_FOUND"),
        MethodNotAllowed: (405, "METHOD_NOT_ALLOWED"),
        HTTPException: lambda exc: (exc.code or 500, "HTTP_ERROR"),  # type: ignore[attr-defined]
        AuditError: _audit_problem,
    })


def _audit_object(body: Json) -> str:
    """What the call was about, without content: a key id, a challenge, sizes."""
    parts = []
    if isinstance(body.get("key"), str):
        parts.append(f"key:{body['key']}")
    if isinstance(body.get("challenge_id"), str):
        parts.append(f"challenge:{body['challenge_id']}")
    if isinstance(body.get("items"), list):
        parts.append(f"items:{len(body['items'])}")
    return " ".join(parts) or "-"


def create_app(config: GatewayConfig, *, recorder: Recorder | None = None,
               challenges: ChallengeStore | None = None,
               clock: Clock = system_clock) -> Flask:
    """The gateway app. ``recorder``: the audit log (``sscard.audit.AuditLog`` or anything
    with its ``operation`` guard); by default the audit log at ``config.audit_url``, else an
    in-memory recorder; either is at ``app.extensions['gateway_audit']``."""
    app = Flask("sscard.gateway")
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    gateway = Gateway(config, challenges, clock=clock)
    document = openapi_document(config.max_batch_items)
    if recorder is None and config.audit_url:
        from sscard.audit import AuditLog

        recorder = AuditLog.open(config.audit_url)
    audit: Recorder = recorder if recorder is not None else MemoryRecorder()
    app.extensions["gateway"] = gateway
    app.extensions["gateway_audit"] = audit

    _problems(config).install(app)
    checks: dict[str, httpops.Check] = {}
    replays = gateway.callers.signatures.replays
    if isinstance(replays, SqlReplayStore):
        checks["database"] = httpops.database_check(replays.engine)
    audit_engine = getattr(audit, "engine", None)
    if audit_engine is not None:
        checks["audit_log"] = httpops.database_check(audit_engine)
    httpops.install(app, "gateway", checks)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(document)


    def refused(actor: str, action: str, obj: str, request_id: str, details: dict[str, Any],
                reason: str) -> None:
        """Record a refusal. If the log cannot take it, the refusal still stands and is what
        the caller hears (nothing ran); the operators' log says the record is missing."""
        try:
            with audit.operation(actor, action, obj, request_id, details) as op:
                op.deny(reason)
        except AuditError as exc:
            log.error("audit log: the refusal of %s was not recorded: %s", action, exc)

    def endpoint(path: str, operation: str, action: str, method_name: str
                 ) -> Callable[[], Response]:
        handler: Handler = getattr(gateway, method_name)
        # the schema the OpenAPI document publishes is the one enforced
        schema = BodySchema(document["paths"][path]["post"]["requestBody"]["content"][
            "application/json"]["schema"], config.max_json_depth)

        def view() -> Response:
            # whatever this request makes the gateway fetch comes out of one budget
            with request_budget(gateway.fetch_policy):
                return handle()

        def handle() -> Response:
            body_bytes = request.get_data(cache=True)
            request_id = request.headers.get("X-Request-Id") or secrets.token_hex(8)
            try:
                caller = gateway.callers.authenticate(
                    request.environ, request.headers, request.method, request.path,
                    request.query_string.decode("latin-1"), body_bytes)
            except GatewayError as exc:
                refused("unauthenticated", action, request.remote_addr or "-", request_id,
                        {}, f"{exc.code}: {exc.message}")
                raise
            g.caller = caller
            try:
                body = schema.load(body_bytes)
            except JsonBodyError as exc:
                refused(caller.system, action, "-", request_id, {"auth": caller.method},
                        str(exc))
                if exc.keyword == "maxItems" and exc.pointer == "/items":
                    raise GatewayError("BATCH_TOO_LARGE", f"at most {config.max_batch_items} "
                                       "items per batch", 413) from None
                raise bad_request(str(exc)) from None
            try:
                gateway.authorise(caller, operation)
            except GatewayError as exc:
                refused(caller.system, action, _audit_object(body), request_id,
                        {"auth": caller.method}, exc.message)
                raise
            error: GatewayError | None = None
            try:
                with audit.operation(caller.system, action, _audit_object(body), request_id,
                                     {"auth": caller.method, "bytes": len(body_bytes)}) as op:
                    try:
                        answer = handler(caller, body)
                    except GatewayError as exc:
                        # answered, not crashed: recorded as what it is (a key the system may
                        # not use is a refusal); the block ends normally to record it so
                        (op.deny if exc.status == 403 else op.fail)(
                            f"{exc.code}: {exc.message}")
                        error = exc
                    else:
                        if "valid" in answer:
                            op.set(valid=bool(answer["valid"]))
                        if "authenticated" in answer:
                            op.set(authenticated=bool(answer["authenticated"]))
            except AuditOutcomeNotRecorded as exc:
                if error is None:
                    raise
                # nothing was done (the operation refused or failed): that is the answer
                log.error("audit log: %s", exc)
            if error is not None:
                raise error
            response = jsonify(answer)
            response.headers["X-Request-Id"] = request_id
            return response

        view.__name__ = f"view_{method_name}"
        return view

    for path, operation, action, method_name in ROUTES:
        app.add_url_rule(path, view_func=endpoint(path, operation, action, method_name),
                         methods=["POST"])
    return app
