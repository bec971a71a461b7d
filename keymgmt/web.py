"""The KMC's HTTP API: a Flask app factory over :class:`keymgmt.service.KeyManagementCentre`.

Authentication: a service identity (the CA, the RA) signs each request with its certificate's
key (``sscard.httpsig``; the certificate is bound to the caller by ``sscard kmc caller add
--certificate``); other callers carry ``Authorization: Bearer <API key>``. Keys are 256-bit random
tokens issued by ``sscard kmc caller add`` (shown once) and stored as SHA-256 digests; the role
(ca, ra, officer, auditor, terminal) decides what a caller may do, and officers use their own
keys so that the KMC itself sees who approves. In production the service sits behind a TLS
reverse proxy (mutual TLS to the proxy is a deployment option); the API key is the KMC's own
check, independent of the proxy.

Binary values travel base64-encoded in JSON. Responses never carry key material except wrapped:
an SM2 envelope for a card key, a PKCS#12 under a one-time passphrase for an officer. Errors are
RFC 9457 problem documents (``sscard.problem``) from one table, ``PROBLEMS``; anything
unexpected is a 500 whose body says only that (details go to the log, never request bodies).
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, request

from keymgmt.cardkeys import CardKeyService
from keymgmt.errors import (
    ApprovalError,
    AuthenticationError,
    CeremonyError,
    Conflict,
    KmcError,
    NotFound,
    PermissionDenied,
    RateLimited,
    SealedError,
    ShareError,
    StorageKeyError,
)
from keymgmt.service import (
    CardRecipient,
    JudicialOrder,
    KeyManagementCentre,
    OfficerRecipient,
    Principal,
)
from sscard import httpops, httpsig, problem
from sscard.jsonbody import limit_json

log = logging.getLogger("sscard.kmc.web")
API_PREFIX = "/kmc/v1"
MAX_BODY = 256 * 1024

api = Blueprint("kmc", __name__, url_prefix=API_PREFIX)


class BadRequest(KmcError):
    """The request itself is malformed (the web layer's own refusal)."""


def _kmc() -> KeyManagementCentre:
    kmc: KeyManagementCentre = current_app.extensions["sscard_kmc"]
    return kmc


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def _field(data: dict[str, Any], name: str, *, required: bool = True) -> Any:
    if name not in data or data[name] is None:
        if required:
            raise BadRequest(f"missing field {name!r}")
        return None
    return data[name]


def _text(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = _field(data, name, required=required)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string")
    return value


def _bytes(data: dict[str, Any], name: str, *, required: bool = True) -> bytes | None:
    value = _text(data, name, required=required)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"field {name!r} is not valid base64") from None


def _principal() -> Principal:
    principal: Principal = g.kmc_principal
    return principal


@api.before_request
def _authenticate() -> None:
    if httpsig.RequestVerifier.present(request.headers):
        g.kmc_principal = _signed_caller()
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    g.kmc_principal = _kmc().authenticate(token.strip() if scheme.lower() == "bearer" else None)


def _signed_caller() -> Principal:
    """A service identity: a request signed (sscard.httpsig) with the key of the certificate
    bound to a caller (``sscard kmc caller add --certificate``). Revoking it here is
    ``caller deactivate``; the KMC does not ask the CA."""
    verifier: httpsig.RequestVerifier = current_app.extensions["sscard_kmc_signatures"]
    found: list[Principal] = []

    def bound_caller(signed: httpsig.SignedRequest) -> None:
        if not signed.certificate_valid_at(datetime.now(UTC)):
            raise AuthenticationError("the request's certificate is not valid now")
        found.append(_kmc().authenticate_certificate(signed.identity))

    verifier.verify(request.headers, request.method, request.path,
                    request.query_string.decode("latin-1"), request.get_data(), bound_caller)
    return found[0]


@api.post("/escrow")
def escrow() -> Any:
    data = _body()
    res = _kmc().escrow(_principal(), _text(data, "owner") or "",
                        _bytes(data, "recipient_public_key") or b"",
                        _text(data, "algorithm", required=False) or "sm2",
                        request_id=_text(data, "request_id", required=False))
    return jsonify({
        "key_id": res.key_id, "owner": res.owner, "algorithm": res.algorithm,
        "public_key": _b64(res.public_key_spki),
        "sm2_enveloped_key": _b64(res.enveloped_key_der),
        "enveloped_key_blob": _b64(res.enveloped_key_blob),
        "enveloped_pkcs8": _b64(res.enveloped_pkcs8),
    }), 201


@api.post("/keys/<key_id>/certificate")
def attach_certificate(key_id: str) -> Any:
    serial = _kmc().attach_certificate(_principal(), key_id,
                                       _bytes(_body(), "certificate") or b"")
    return jsonify({"key_id": key_id, "certificate_serial": serial})


def _key_json(info: dict[str, Any]) -> dict[str, Any]:
    return {**info, "public_key_spki": _b64(info["public_key_spki"])}


@api.get("/keys")
def find_keys() -> Any:
    owner = request.args.get("owner")
    serial = request.args.get("certificate_serial")
    if owner is None and serial is None:
        raise BadRequest("give owner or certificate_serial")
    keys = _kmc().find_keys(_principal(), owner=owner, certificate_serial=serial)
    return jsonify({"keys": [_key_json(k) for k in keys]})


@api.post("/recoveries")
def request_recovery() -> Any:
    data = _body()
    recipient_doc = _field(data, "recipient")
    if not isinstance(recipient_doc, dict):
        raise BadRequest("recipient must be {\"card_public_key\": ...} or {\"officer\": ...}")
    recipient: CardRecipient | OfficerRecipient
    if "card_public_key" in recipient_doc:
        recipient = CardRecipient(_bytes(recipient_doc, "card_public_key") or b"")
    elif "officer" in recipient_doc:
        recipient = OfficerRecipient(_text(recipient_doc, "officer") or "")
    else:
        raise BadRequest("recipient must name card_public_key or officer")
    judicial = None
    jdoc = data.get("judicial")
    if jdoc is not None:
        if not isinstance(jdoc, dict):
            raise BadRequest("judicial must be an object")
        judicial = JudicialOrder(_text(jdoc, "authority") or "", _text(jdoc, "order_ref") or "",
                                 _text(jdoc, "document_sha256") or "")
    info = _kmc().request_recovery(
        _principal(), recipient=recipient, reason=_text(data, "reason") or "",
        key_id=_text(data, "key_id", required=False),
        certificate_serial=_text(data, "certificate_serial", required=False),
        owner=_text(data, "owner", required=False), judicial=judicial)
    return jsonify(info), 201


@api.get("/recoveries/<request_id>")
def recovery_status(request_id: str) -> Any:
    return jsonify(_kmc().recovery_status(_principal(), request_id))


@api.post("/recoveries/<request_id>/approve")
def approve(request_id: str) -> Any:
    data = request.get_json(silent=True) or {}
    comment = data.get("comment", "") if isinstance(data, dict) else ""
    return jsonify(_kmc().approve(_principal(), request_id, str(comment)))


@api.post("/recoveries/<request_id>/reject")
def reject(request_id: str) -> Any:
    data = request.get_json(silent=True) or {}
    comment = data.get("comment", "") if isinstance(data, dict) else ""
    return jsonify(_kmc().reject(_principal(), request_id, str(comment)))


@api.post("/recoveries/<request_id>/complete")
def complete(request_id: str) -> Any:
    res = _kmc().complete_recovery(_principal(), request_id)
    response = jsonify({
        "request_id": res.request_id, "key_id": res.key_id,
        "sm2_enveloped_key": _b64(res.enveloped_key_der),
        "enveloped_key_blob": _b64(res.enveloped_key_blob),
        "pkcs12": _b64(res.pkcs12),
        # shown once, to the named officer only; the KMC does not keep it
        "pkcs12_passphrase": res.pkcs12_passphrase,
    })
    response.headers["Cache-Control"] = "no-store"
    return response


@api.post("/card-auth/hsm-step")
def hsm_step() -> Any:
    """Body ``{"step1": "<iReadCardBas_HSM_Step1 output>"}`` -> ``{"step2_key": "..."}``."""
    line = _text(_body(), "step1") or ""
    return jsonify({"step2_key": CardKeyService(_kmc()).hsm_step(_principal(), line)})


def _card_args(data: dict[str, Any]) -> dict[str, Any]:
    try:
        flag = int(_field(data, "algorithm_flag"))
    except (TypeError, ValueError):
        raise BadRequest("algorithm_flag must be an integer (1: 3DES, 3: SM4)") from None
    return {"region_code": _text(data, "region_code") or "", "atr": _bytes(data, "atr") or b"",
            "algorithm_flag": flag,
            # a terminal bound to a terminal id (its PSAM / terminal number) must name it
            "terminal_id": _text(data, "terminal_id", required=False)}


@api.post("/card-auth/external")
def external_cryptogram() -> Any:
    """``{region_code, atr, algorithm_flag, challenge, key_id?}`` -> ``{cryptogram}``."""
    data = _body()
    try:
        key_id = int(data.get("key_id", 0x0A))
    except (TypeError, ValueError):
        raise BadRequest("key_id must be an integer") from None
    out = CardKeyService(_kmc()).external_cryptogram(
        _principal(), challenge=_bytes(data, "challenge") or b"", key_id=key_id,
        **_card_args(data))
    return jsonify({"cryptogram": _b64(out)})


@api.post("/card-auth/internal")
def internal_check() -> Any:
    """``{region_code, atr, algorithm_flag, process_factor, data}`` -> ``{expected}``."""
    data = _body()
    out = CardKeyService(_kmc()).internal_check(
        _principal(), process_factor=_bytes(data, "process_factor") or b"",
        data=_bytes(data, "data") or b"", **_card_args(data))
    return jsonify({"expected": _b64(out)})


@api.post("/card-auth/pin-command")
def pin_command() -> Any:
    data = _body()
    try:
        flag = int(_field(data, "algorithm_flag"))
        key_id = int(_field(data, "key_id"))
    except (TypeError, ValueError):
        raise BadRequest("algorithm_flag and key_id must be integers") from None
    out = CardKeyService(_kmc()).pin_command(
        _principal(), region_code=_text(data, "region_code") or "",
        atr=_bytes(data, "atr") or b"", algorithm_flag=flag, key_id=key_id,
        challenge=_bytes(data, "challenge") or b"", header=_bytes(data, "header") or b"",
        new_pin=_text(data, "new_pin") or "",
        terminal_id=_text(data, "terminal_id", required=False))
    return jsonify({"data": _b64(out)})


@api.get("/events")
def events() -> Any:
    return jsonify({"events": _kmc().events(_principal(), request.args.get("action", ""))})


def _log_refusal(exc: Exception, found: problem.Problem) -> None:
    if isinstance(exc, KmcError):
        log.info("refused %s %s: %s", request.method, request.path, exc)


#: the one place the KMC's web layer turns an error into an HTTP answer (RFC 9457)
PROBLEMS = problem.ProblemTable({
    BadRequest: (400, "bad_request"),
    httpsig.SignatureError: lambda exc: (401, exc.code),  # type: ignore[attr-defined]
    AuthenticationError: (401, "unauthenticated"),
    ApprovalError: (403, "approval_refused"),
    PermissionDenied: (403, "forbidden"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    RateLimited: (429, "rate_limited"),
    ShareError: (400, "share_refused"),
    CeremonyError: (409, "ceremony_state"),
    StorageKeyError: (500, "storage_key_failed"),
    SealedError: (503, "sealed"),
    httpsig.ReplayStoreUnavailable: (503, "replay_memory_unavailable"),
    KmcError: (400, "refused"),
}, observe=_log_refusal)


def create_app(kmc: KeyManagementCentre) -> Flask:
    """The KMC service around an opened (and, for key operations, unsealed) centre."""
    app = Flask("sscard.kmc")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["sscard_kmc"] = kmc
    # signed requests seen, in the KMC's database: every worker refuses a replay
    app.extensions["sscard_kmc_signatures"] = httpsig.RequestVerifier(
        httpsig.SqlReplayStore(kmc.engine))
    app.register_blueprint(api)
    limit_json(app)  # a deeply nested body is a 400, not a RecursionError

    def unsealed() -> bool:
        return not kmc.sealed

    httpops.install(app, "kmc", {"database": httpops.database_check(kmc.engine),
                                 "unsealed": unsealed},
                    health=lambda: {"sealed": kmc.sealed})

    PROBLEMS.install(app)

    return app
