"""The OpenAPI 3.1 description of the enrollment API, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from sscard.httpsig import OPENAPI_SECURITY_SCHEME
from sscard.problem import PROBLEM_JSON, openapi_schema

_ERROR = {"description": "refused; the RFC 9457 problem document says why",
          "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
_REQUEST = {"description": "the request",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}}}
_ID = [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}]

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "sscard RA enrollment API",
        "version": "1",
        "description": "For card-issuing reader tools and kiosks: file the enrollment of a "
                       "card (a PKCS#10 request signed by the card's own key), follow it, and "
                       "confirm or roll back the card's personalisation. Callers authenticate "
                       "with a bearer token issued by an RA administrator.",
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}, {"requestSignature": []}],
    "paths": {
        "/whoami": {
            "get": {"summary": "The caller's client name (checks the token)",
                    "responses": {"200": {"description": "the client", "content": {
                        "application/json": {"schema": {"type": "object", "properties": {
                            "client": {"type": "string"}}}}}}, "401": _ERROR}},
        },
        "/enrollments": {
            "post": {
                "summary": "File an enrollment (idempotent for the same card and key)",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Enrollment"}}}},
                "responses": {"201": _REQUEST, "400": _ERROR, "401": _ERROR, "403": _ERROR,
                              "409": _ERROR, "502": _ERROR},
            },
        },
        "/enrollments/{request_id}": {
            "get": {"summary": "The request's state; once done, both certificates and the "
                               "wrapped encryption key",
                    "parameters": _ID,
                    "responses": {"200": _REQUEST, "401": _ERROR, "403": _ERROR,
                                  "404": _ERROR}},
        },
        "/enrollments/{request_id}/confirm": {
            "post": {"summary": "The card was written and read back: mark it issued",
                     "parameters": _ID,
                     "responses": {"200": _REQUEST, "401": _ERROR, "403": _ERROR,
                                   "404": _ERROR, "409": _ERROR}},
        },
        "/enrollments/{request_id}/rollback": {
            "post": {"summary": "The card was not finished: revoke what was issued for it",
                     "parameters": _ID,
                     "requestBody": {"content": {"application/json": {"schema": {
                         "type": "object", "properties": {"reason": {"type": "string"}}}}}},
                     "responses": {"200": _REQUEST, "400": _ERROR, "401": _ERROR, "403": _ERROR,
                                   "404": _ERROR, "409": _ERROR}},
        },
        "/card-numbers/{serial}": {
            "get": {"summary": "The number of the active card whose signing certificate has "
                               "this serial (hex) and issuer: the identity provider's "
                               "card-number claim; only for a signed caller whose certificate "
                               "the RA names; 404 for another CA's certificate",
                    "parameters": [{"name": "serial", "in": "path", "required": True,
                                    "schema": {"type": "string", "pattern": "^[0-9A-Fa-f]+$"}},
                                   {"name": "issuer", "in": "query", "required": True,
                                    "description": "the certificate's issuer name, DER in hex",
                                    "schema": {"type": "string",
                                               "pattern": "^([0-9A-Fa-f]{2})+$"}}],
                    "responses": {"200": {"description": "the card number", "content": {
                        "application/json": {"schema": {"type": "object", "properties": {
                            "card_number": {"type": "string"}}}}}},
                        "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR}},
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                            "requestSignature": OPENAPI_SECURITY_SCHEME},
        "schemas": {
            "Error": openapi_schema(),
            "Cardholder": {
                "type": "object",
                "required": ["ssn", "name", "sex", "ethnicity", "birthplace", "birth_date"],
                "properties": {
                    "ssn": {"type": "string", "pattern": "^[0-9]{17}[0-9X]$"},
                    "name": {"type": "string"},
                    "sex": {"type": "string", "enum": ["0", "1", "2", "9"]},
                    "ethnicity": {"type": "string", "pattern": "^[0-9]{1,2}$"},
                    "birthplace": {"type": "string", "pattern": "^[0-9]{6}$"},
                    "birth_date": {"type": "string", "pattern": "^[0-9]{8}$"},
                },
            },
            "Enrollment": {
                "type": "object", "required": ["cardholder", "card", "csr"],
                "properties": {
                    "cardholder": {"$ref": "#/components/schemas/Cardholder"},
                    "card": {"type": "object", "required": ["card_id", "card_number"],
                             "properties": {
                                 "card_id": {"type": "string", "pattern": "^[0-9A-Fa-f]{32}$"},
                                 "card_number": {"type": "string"},
                                 "generation": {"type": "integer", "default": 3}}},
                    "csr": {"type": "string", "contentEncoding": "base64",
                            "description": "PKCS#10 DER signed by the card's SM2 key; subject "
                                           "exactly CN=<name>, serialNumber=<ssn>, C=CN from "
                                           "the cardholder data (anything else: 400)"},
                    "batch": {"type": "string",
                              "description": "a batch an officer pre-authorised for this "
                                             "station (and, if it lists them, this cardholder) "
                                             "and not expired (otherwise 403)"},
                },
            },
            "Request": {
                "type": "object",
                "properties": {
                    "request_id": {"type": "string"},
                    "kind": {"type": "string",
                             "enum": ["enrollment", "revocation", "renewal", "key_recovery"]},
                    "state": {"type": "string",
                              "enum": ["submitted", "approved", "done", "rejected", "failed"]},
                    "error": {"type": ["string", "null"]},
                    "card": {"type": ["object", "null"]},
                    "cardholder": {"type": ["object", "null"]},
                    "sign_cert": {"type": "string", "contentEncoding": "base64"},
                    "enc_cert": {"type": "string", "contentEncoding": "base64"},
                    "enveloped_key_blob": {"type": "string", "contentEncoding": "base64",
                                           "description": "GM/T 0016 ENVELOPEDKEYBLOB for "
                                                          "the card's signing key"},
                },
            },
        },
    },
}
