"""Fuzz the gateway's JSON requests: every operation of sscard.gateway.core.Gateway with a JSON
object from the fuzzer, as the HTTP layer hands it over after ``request.get_json`` (only JSON
objects get that far). Allowed: GatewayError, which the service turns into a JSON error with a
stable code; anything else would be a 500."""

from __future__ import annotations

import base64
import json

import _common

with _common.instrumented():
    import _pki

    from sscard.gateway.caller import Caller
    from sscard.gateway.config import GatewayConfig, GatewayKey, SystemPolicy
    from sscard.gateway.core import Gateway
    from sscard.gateway.errors import GatewayError

OPERATIONS = ("sign", "sign_batch", "verify", "verify_batch", "encrypt", "decrypt", "status",
              "new_challenge", "cardholder_verify")
_gateway: Gateway | None = None


def gateway() -> tuple[Gateway, Caller]:
    global _gateway
    p = _pki.pki()
    if _gateway is None:
        key = GatewayKey(p.leaf_key, p.leaf_cert, (p.ca_cert,))
        config = GatewayConfig(
            trust_anchors=[p.ca_cert], keys={"k1": key},
            systems={"fuzz": SystemPolicy(frozenset({"sign", "verify", "encrypt", "decrypt",
                                                     "status", "cardholder"}),
                                          signing_keys=frozenset({"k1"}),
                                          decryption_key="k1")},
            max_batch_items=20)
        _gateway = Gateway(config)
    return _gateway, Caller("fuzz", p.leaf_cert, "mtls")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    operation = OPERATIONS[data[0] % len(OPERATIONS)]
    try:
        body = json.loads(data[1:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return
    if not isinstance(body, dict):
        return
    gw, caller = gateway()
    try:
        answer = getattr(gw, operation)(caller, body)
    except GatewayError:
        return
    json.dumps(answer)  # what the service sends back must be JSON


def seeds() -> list[bytes]:
    p = _pki.pki()
    doc = base64.b64encode(b"document").decode()
    cert = base64.b64encode(p.leaf_cert.dump()).decode()
    bodies = [
        ("sign", {"key": "k1", "content": doc, "detached": False}),
        ("sign_batch", {"key": "k1", "items": [{"content": doc}, {"content": doc}]}),
        ("verify", {"signed": doc, "content": doc}),
        ("verify_batch", {"items": [{"signed": doc}]}),
        ("encrypt", {"content": doc, "recipients": [cert]}),
        ("decrypt", {"enveloped": doc}),
        ("status", {"certificate": cert}),
        ("new_challenge", {}),
        ("cardholder_verify", {"challenge_id": "x", "signature": doc, "certificate": cert}),
    ]
    return [bytes([OPERATIONS.index(op)]) + json.dumps(body).encode() for op, body in bodies]


if __name__ == "__main__":
    _common.main(test_one_input, seeds)
