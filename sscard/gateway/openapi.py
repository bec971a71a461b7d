"""The OpenAPI 3 description of the gateway, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from sscard import httpsig, problem

_B64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_B64 = {"type": "string", "contentEncoding": "base64"}
"""Base64 in answers."""
_B64_IN = {**_B64, "pattern": _B64_PATTERN}
"""Base64 in requests: checked, as the gateway decodes it strictly."""
#: a certificate in a request: 64 KiB of DER is far more than any of ours
_CERT_IN = {**_B64_IN, "maxLength": 4 * (64 * 1024 // 3 + 1),
            "description": "DER certificate, base64"}
_CHAIN_MAX = 10


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    """An answer object: the documented fields, others may be added in later versions."""
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


def _req(required: list[str], **props: Any) -> dict[str, Any]:
    """A request object: exactly the documented fields, of exactly their types."""
    return {**_obj(required, **props), "additionalProperties": False}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


#: every error code the gateway answers with
ERROR_CODES = ("UNAUTHENTICATED", "REQUEST_EXPIRED", "REPLAYED_REQUEST", "FORBIDDEN",
               "BAD_REQUEST", "MALFORMED_INPUT", "PAYLOAD_TOO_LARGE", "BATCH_TOO_LARGE",
               "NOT_FOUND", "METHOD_NOT_ALLOWED", "HTTP_ERROR", "SIGNING_FAILED",
               "TIMESTAMP_UNAVAILABLE", "NOT_ADDRESSED_TO_CALLER", "DECRYPTION_FAILED",
               "RECIPIENT_NOT_VALID", "CHALLENGE_UNKNOWN", "CHALLENGE_WRONG_SYSTEM",
               "CHALLENGE_REPLAYED", "CHALLENGE_EXPIRED", "AUDIT_UNAVAILABLE",
               "OUTCOME_NOT_RECORDED", "REPLAY_MEMORY_UNAVAILABLE", "INTERNAL")
_ERROR = problem.openapi_schema(list(ERROR_CODES))
#: one failed item of a batch (the batch itself succeeded)
_ITEM_ERROR = _obj(["code", "message"], code={"type": "string", "enum": list(ERROR_CODES)},
                   message={"type": "string"})

_TIME = {"type": "string", "format": "date-time"}
_REASON = _obj(["code", "message"], code={"type": "string"}, message={"type": "string"},
               at=_TIME)
_SIGNER = _obj(["subject"], subject={"type": "string"},
               common_name=_nullable({"type": "string"}),
               social_insurance_number=_nullable({"type": "string"}),
               issuer={"type": "string"}, serial_number={"type": "string"})
_REPORT = _obj(
    ["valid", "reasons"], valid={"type": "boolean"}, signer=_nullable(_SIGNER),
    reasons={"type": "array", "items": _REASON,
             "description": "Stable codes: CONTENT_CHANGED, BAD_SIGNATURE, UNKNOWN_SIGNER, "
                            "WRONG_SIGNER, UNTRUSTED_ROOT, EXPIRED, NOT_YET_VALID, REVOKED, "
                            "REVOCATION_UNKNOWN, TIMESTAMP_INVALID, TIMESTAMP_UNTRUSTED, ..."},
    notes={"type": "array", "items": _REASON},
    signing_time=_nullable(_TIME),
    timestamp_time=_nullable(_TIME),
    content=_B64,
)
_CONTENT_TYPES = {"type": "string", "enum": ["rfc5652", "gm"]}
_SIGN_REQ = _req(["key", "content"],
                 key={"type": "string", "minLength": 1, "maxLength": 128,
                      "description": "signing key id"},
                 content=_B64_IN, detached={"type": "boolean", "default": False},
                 timestamp={"type": "boolean", "default": False},
                 content_types=_CONTENT_TYPES)
_VERIFY_REQ = _req(["signed"], signed=_B64_IN, content=_B64_IN,
                   return_content={"type": "boolean", "default": False})
_VERIFY_ITEM = _req(["signed"], signed=_B64_IN, content=_B64_IN)


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


def openapi_document(max_batch_items: int = 1000) -> dict[str, Any]:
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
                _req(["key", "items"], key=_SIGN_REQ["properties"]["key"],
                     items={"type": "array", "minItems": 1, "maxItems": max_batch_items,
                            "items": _req(["content"], content=_B64_IN)},
                     detached={"type": "boolean", "default": False},
                     timestamp={"type": "boolean", "default": False},
                     content_types=_CONTENT_TYPES),
                _obj(["results"], results={"type": "array",
                                           "items": _obj(["signed"], signed=_B64)})),
            "/v1/verify": _op("Verify a CMS SignedData", _VERIFY_REQ,
                              {"$ref": "#/components/schemas/SignatureReport"}),
            "/v1/verify/batch": _op(
                "Verify many signatures",
                _req(["items"], items={"type": "array", "minItems": 1,
                                       "maxItems": max_batch_items, "items": _VERIFY_ITEM}),
                _obj(["results"], results={"type": "array", "items": {"anyOf": [
                    {"$ref": "#/components/schemas/SignatureReport"},
                    _obj(["valid", "error"], valid={"const": False},
                         error=_ITEM_ERROR)]}})),
            "/v1/encrypt": _op(
                "Encrypt to recipient certificates (CMS EnvelopedData)",
                _req(["recipients", "content"],
                     recipients={"type": "array", "minItems": 1, "maxItems": 100,
                                 "items": _CERT_IN},
                     content=_B64_IN, cipher={"type": "string", "enum": [
                         "sm4_cbc", "sm4_gcm", "aes128_cbc", "aes256_cbc", "aes128_gcm",
                         "aes256_gcm"]},
                     content_types=_CONTENT_TYPES,
                     authenticated={"type": "boolean", "default": False,
                                    "description": "RFC 5083 AuthEnvelopedData (GCM ciphers)"}),
                _obj(["enveloped"], enveloped=_B64)),
            "/v1/decrypt": _op("Open an envelope addressed to the calling system",
                               _req(["enveloped"], enveloped=_B64_IN),
                               _obj(["content"], content=_B64, cipher={"type": "string"})),
            "/v1/certificates/status": _op(
                "Certificate status (path, OCSP/CRL)",
                _req(["certificate"], certificate=_CERT_IN,
                     chain={"type": "array", "maxItems": _CHAIN_MAX, "items": _CERT_IN}),
                _obj(["status", "valid"], status={"type": "string", "enum": [
                    "good", "revoked", "unknown", "invalid"]}, valid={"type": "boolean"},
                    revocation_checked={"type": "boolean"},
                    revocation_time=_nullable(_TIME),
                    revocation_reason=_nullable({"type": "string"}),
                    reasons={"type": "array", "items": _REASON}, subject=_SIGNER)),
            "/v1/cardholder/challenge": _op(
                "A one-time challenge for the cardholder's card to sign",
                _req([]), _obj(["challenge_id", "to_sign", "expires_at"],
                               challenge_id={"type": "string"}, to_sign=_B64,
                               expires_at={"type": "string", "format": "date-time"})),
            "/v1/cardholder/verify": _op(
                "Check the card's SM2 signature over the challenge, its certificate and status",
                _req(["challenge_id", "signature", "certificate"],
                     challenge_id={"type": "string", "minLength": 1, "maxLength": 128},
                     signature={**_B64_IN, "maxLength": 1024}, certificate=_CERT_IN),
                _obj(["authenticated"], authenticated={"type": "boolean"},
                     cardholder=_SIGNER, reasons={"type": "array", "items": _REASON})),
        },
    }
