"""SM2-signed ID tokens: the opt-in for business systems that verify with this library.

JOSE registers no algorithm for SM2 with SM3, so no standard JOSE library verifies these tokens
(that is why ES256 is the default; see docs/login-integration.md). The token is an ordinary
compact JWS (RFC 7515) with ``"alg": "SM2-SM3"``: the signing input is signed with SM2 over
SM3 with the GM/T 0009 default user ID, the signature written as r || s (32 bytes each, as
JOSE writes ECDSA). The keys are published apart from the standard JWKS (``/jwks-sm2.json``)
as ``{"kty": "EC", "crv": "SM2", "x", "y"}``, so that the standard set stays readable by every
client library.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from asn1crypto import keys as asn1keys
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sscard.crypto.asymmetric import PrivateKey, PublicKey, SignatureEncoding
from sscard.crypto.errors import CryptoError, InvalidSignature
from sscard.crypto.sm2 import SM2PublicKey

ALG = "SM2-SM3"


class Sm2JwsError(ValueError):
    """The token is malformed, signed by no published key, or its claims do not hold."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise Sm2JwsError("not base64url") from None


def encode(claims: Mapping[str, Any], key: PrivateKey, kid: str) -> str:
    header = {"alg": ALG, "kid": kid, "typ": "JWT"}
    signing_input = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     _b64(json.dumps(dict(claims), separators=(",", ":"),
                                     ensure_ascii=False).encode()))
    r, s = decode_dss_signature(key.sign(signing_input.encode()))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JOSE's r || s
    return f"{signing_input}.{_b64(signature)}"


def public_jwk(key: PublicKey, kid: str) -> dict[str, str]:
    point = asn1keys.PublicKeyInfo.load(key.spki_der())["public_key"].native
    return {"kty": "EC", "crv": "SM2", "x": _b64(point[1:33]), "y": _b64(point[33:65]),
            "kid": kid, "alg": ALG, "use": "sig"}


def _public_key(jwk: Mapping[str, Any]) -> PublicKey:
    point = b"\x04" + _unb64(str(jwk["x"])) + _unb64(str(jwk["y"]))
    try:
        return PublicKey(SM2PublicKey.from_point(point))
    except (CryptoError, ValueError):
        raise Sm2JwsError("the published SM2 key is not a point on the curve") from None


def verify(token: str, jwks: Mapping[str, Any], *, issuer: str, audience: str,
           nonce: str | None = None, leeway: int = 0) -> dict[str, Any]:
    """The claims of an SM2-signed ID token, after its signature (by a key of ``jwks``, the
    provider's ``/jwks-sm2.json``), ``iss``, ``aud``, ``exp`` and ``nonce`` are checked."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Sm2JwsError("not a compact JWS")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise Sm2JwsError("header or payload is not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != ALG:
        raise Sm2JwsError(f"alg must be {ALG}")
    keys: Sequence[Mapping[str, Any]] = [k for k in jwks.get("keys", [])
                                         if k.get("kid") == header.get("kid")
                                         and k.get("crv") == "SM2"]
    if not keys:
        raise Sm2JwsError(f"no published SM2 key {header.get('kid')!r}")
    try:
        _public_key(keys[0]).verify(_unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode(),
                                    encoding=SignatureEncoding.P1363)
    except (InvalidSignature, CryptoError, ValueError):
        raise Sm2JwsError("the signature does not verify") from None
    if not isinstance(claims, dict):
        raise Sm2JwsError("the payload is not a JSON object")
    if claims.get("iss") != issuer:
        raise Sm2JwsError("iss is not the provider")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise Sm2JwsError("aud is not this client")
    if not isinstance(claims.get("exp"), int) or claims["exp"] + leeway < time.time():
        raise Sm2JwsError("expired")
    if nonce is not None and claims.get("nonce") != nonce:
        raise Sm2JwsError("nonce does not match")
    return claims
