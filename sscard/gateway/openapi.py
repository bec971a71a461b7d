"""The OpenAPI 3 description of the gateway, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from sscard import httpsig, problem

_B64 = {"type": "string", "contentEncoding": "base64"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


_ERROR = problem.openapi_schema([
    "UNAUTHENTICATED", "REQUEST_EXPIRED", "REPLAYED_REQUEST", "FORBIDDEN",
    "BAD_REQUEST", "MALFORMED_INPUT", "PAYLOAD_TOO_LARGE", "BATCH_TOO_LARGE",
    "NOT_FOUND", "METHOD_NOT_ALLOWED", "SIGNING_FAILED", "TIMESTAMP_UNAVAILABLE",
    "NOT_ADDRESSED_TO_CALLER", "DECRYPTION_FAILED", "RECIPIENT_NOT_VALID",
    "CHALLENGE_UNKNOWN", "CHALLENGE_WRONG_SYSTEM", "CHALLENGE_REPLAYED",
    "CHALLENGE_EXPIRED", "AUDIT_UNAVAILABLE", "REPLAY_MEMORY_UNAVAILABLE", "INTERNAL"])

_REASON = _obj(["code", "message"], code={"type": "string"}, message={"type": "string"},
               at={"type": "string", "format": "date-time"})
_SIGNER = _obj(["subject"], subject={"type": "string"}, common_name={"type": "string"},
               social_insurance_number={"type": "string"}, issuer={"type": "string"},
               serial_number={"type": "string"})
_REPORT = _obj(
    ["valid", "reasons"], valid={"type": "boolean"}, signer=_SIGNER,
    reasons={"type": "array", "items": _REASON,
             "description": "Stable codes: CONTENT_CHANGED, BAD_SIGNATURE, UNKNOWN_SIGNER, "
                            "WRONG_SIGNER, UNTRUSTED_ROOT, EXPIRED, NOT_YET_VALID, REVOKED, "
                            "REVOCATION_UNKNOWN, TIMESTAMP_INVALID, TIMESTAMP_UNTRUSTED, ..."},
    notes={"type": "array", "items": _REASON},
    signing_time={"type": "string", "format": "date-time"},
    timestamp_time={"type": "string", "format": "date-time"},
    content=_B64,
)
_SIGN_REQ = _obj(["key", "content"], key={"type": "string", "description": "signing key id"},
                 content=_B64, detached={"type": "boolean", "default": False},
                 timestamp={"type": "boolean", "default": False},
                 content_types={"type": "string", "enum": ["rfc5652", "gm"]})
_VERIFY_REQ = _obj(["signed"], signed=_B64, content=_B64,
                   return_content={"type": "boolean", "default": False})


def _op(summary: str, request_schema: dict[str, Any], response_schema: dict[str, Any]
        ) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "security": [{"mutualTLS": []}, {"requestSignature": []}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": request_schema}}},
        "responses": {
            "200": {"description": "OK", "content": {
                "application/json": {"schema": response_schema}}},
            "default": {"description": "Error", "content": {
                problem.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    }}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",  # 3.1: the mutualTLS security scheme
        "info": {"title": "sscard gateway (certificate application support platform)",
                 "version": "1"},
        "components": {
            "schemas": {"Error": _ERROR, "SignatureReport": _REPORT},
            "securitySchemes": {
                "mutualTLS": {"type": "mutualTLS",
                              "description": "a client certificate issued by our CA"},
                "requestSignature": httpsig.OPENAPI_SECURITY_SCHEME,
            },
        },
        "paths": {
            "/v1/sign": _op("Sign a document (CMS SignedData) with an authorised key",
                            _SIGN_REQ, _obj(["signed"], signed=_B64)),
            "/v1/sign/batch": _op(
                "Sign many documents with one key",
                _obj(["key", "items"], key={"type": "string"},
                     items={"type": "array", "items": _obj(["content"], content=_B64)},
                     detached={"type": "boolean"}, timestamp={"type": "boolean"}),
                _obj(["results"], results={"type": "array",
                                           "items": _obj(["signed"], signed=_B64)})),
            "/v1/verify": _op("Verify a CMS SignedData", _VERIFY_REQ,
                              {"$ref": "#/components/schemas/SignatureReport"}),
            "/v1/verify/batch": _op(
                "Verify many signatures",
                _obj(["items"], items={"type": "array", "items": _VERIFY_REQ}),
                _obj(["results"], results={"type": "array", "items": {
                    "$ref": "#/components/schemas/SignatureReport"}})),
            "/v1/encrypt": _op(
                "Encrypt to recipient certificates (CMS EnvelopedData)",
                _obj(["recipients", "content"], recipients={"type": "array", "items": _B64},
                     content=_B64, cipher={"type": "string", "enum": [
                         "sm4_cbc", "sm4_gcm", "aes128_cbc", "aes256_cbc", "aes128_gcm",
                         "aes256_gcm"]},
                     content_types={"type": "string", "enum": ["rfc5652", "gm"]},
                     authenticated={"type": "boolean", "default": False,
                                    "description": "RFC 5083 AuthEnvelopedData (GCM ciphers)"}),
                _obj(["enveloped"], enveloped=_B64)),
            "/v1/decrypt": _op("Open an envelope addressed to the calling system",
                               _obj(["enveloped"], enveloped=_B64),
                               _obj(["content"], content=_B64, cipher={"type": "string"})),
            "/v1/certificates/status": _op(
                "Certificate status (path, OCSP/CRL)",
                _obj(["certificate"], certificate=_B64, chain={"type": "array", "items": _B64}),
                _obj(["status", "valid"], status={"type": "string", "enum": [
                    "good", "revoked", "unknown", "invalid"]}, valid={"type": "boolean"},
                    revocation_time={"type": "string"}, reasons={"type": "array",
                                                                 "items": _REASON})),
            "/v1/cardholder/challenge": _op(
                "A one-time challenge for the cardholder's card to sign",
                _obj([]), _obj(["challenge_id", "to_sign", "expires_at"],
                               challenge_id={"type": "string"}, to_sign=_B64,
                               expires_at={"type": "string", "format": "date-time"})),
            "/v1/cardholder/verify": _op(
                "Check the card's SM2 signature over the challenge, its certificate and status",
                _obj(["challenge_id", "signature", "certificate"],
                     challenge_id={"type": "string"}, signature=_B64, certificate=_B64),
                _obj(["authenticated"], authenticated={"type": "boolean"},
                     cardholder=_SIGNER, reasons={"type": "array", "items": _REASON})),
        },
    }
