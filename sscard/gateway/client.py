"""The Python client of the gateway, for business systems::

    from sscard.gateway.client import GatewayClient
    gw = GatewayClient("https://gateway:8443", key=my_key, certificate=my_cert)  # signed requests
    gw = GatewayClient("https://gateway:8443", tls_client=("me.pem", "me.key"), ca_file="ca.pem")
    signed = gw.sign(b"document", key_id="hr-sign")
    report = gw.verify(signed)             # {"valid": True, "signer": {...}, "reasons": []}

Errors come back as ``GatewayClientError`` with the gateway's stable ``code``, read from its
RFC 9457 problem document (anything else is ``BAD_ANSWER``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from asn1crypto import x509

from sscard import problem
from sscard.httpsig import RequestSigner
from sscard.keys.base import KeyHandle


class GatewayClientError(Exception):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _cert_der(cert: x509.Certificate | bytes) -> bytes:
    return cert.dump() if isinstance(cert, x509.Certificate) else bytes(cert)


class GatewayClient:
    """Calls the gateway, authenticating by request signature (``key`` and ``certificate``)
    or mutual TLS (``tls_client``: certificate and unencrypted key PEM files)."""

    def __init__(self, url: str, *, key: KeyHandle | None = None,
                 certificate: x509.Certificate | None = None,
                 tls_client: tuple[str, str] | None = None, ca_file: str | None = None,
                 timeout: float = 60.0, session: requests.Session | None = None) -> None:
        if (key is None) != (certificate is None):
            raise ValueError("request signing needs both key and certificate")
        if key is None and tls_client is None:
            raise ValueError("give key and certificate (request signatures) or tls_client")
        self.url = url.rstrip("/")
        self._prefix = urlsplit(self.url).path
        self.key = key
        self.certificate = certificate
        self._signer = (RequestSigner(key, certificate)
                        if key is not None and certificate is not None else None)
        self.timeout = timeout
        self.session = session or requests.Session()
        # given per request: requests lets REQUESTS_CA_BUNDLE override a session's verify
        self._tls_client = tls_client
        self._verify: str | bool = ca_file if ca_file is not None else True

    # -- transport -----------------------------------------------------------------------

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self._signer is not None:
            headers.update(self._signer.headers("POST", self._prefix + path, "", data))
        answer = self.session.post(self.url + path, data=data, headers=headers,
                                   timeout=self.timeout, verify=self._verify,
                                   cert=self._tls_client)
        if answer.status_code != 200:
            found = problem.parse(answer.status_code, answer.headers.get("Content-Type"),
                                  answer.content)
            code = "BAD_ANSWER" if found.code == "bad_answer" else found.code
            raise GatewayClientError(code, found.detail, answer.status_code)
        try:
            parsed: dict[str, Any] = answer.json()
        except ValueError:
            raise GatewayClientError("BAD_ANSWER", "HTTP 200: not JSON", 200) from None
        return parsed

    # -- operations ----------------------------------------------------------------------

    def sign(self, content: bytes, key_id: str, *, detached: bool = False,
             timestamp: bool = False, content_types: str = "rfc5652") -> bytes:
        answer = self.call("/v1/sign", {"key": key_id, "content": _b64(content),
                                        "detached": detached, "timestamp": timestamp,
                                        "content_types": content_types})
        return base64.b64decode(answer["signed"])

    def sign_batch(self, contents: Iterable[bytes], key_id: str, *,
                   detached: bool = False) -> list[bytes]:
        answer = self.call("/v1/sign/batch", {
            "key": key_id, "detached": detached,
            "items": [{"content": _b64(c)} for c in contents]})
        return [base64.b64decode(r["signed"]) for r in answer["results"]]

    def verify(self, signed: bytes, content: bytes | None = None, *,
               return_content: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"signed": _b64(signed), "return_content": return_content}
        if content is not None:
            body["content"] = _b64(content)
        return self.call("/v1/verify", body)

    def verify_batch(self, items: Iterable[tuple[bytes, bytes | None]]) -> list[dict[str, Any]]:
        body = {"items": [{"signed": _b64(s), **({"content": _b64(c)} if c is not None else {})}
                          for s, c in items]}
        return list(self.call("/v1/verify/batch", body)["results"])

    def encrypt(self, content: bytes, recipients: Sequence[x509.Certificate | bytes], *,
                cipher: str = "sm4_cbc", content_types: str = "rfc5652",
                authenticated: bool = False) -> bytes:
        answer = self.call("/v1/encrypt", {
            "content": _b64(content), "recipients": [_b64(_cert_der(c)) for c in recipients],
            "cipher": cipher, "content_types": content_types, "authenticated": authenticated})
        return base64.b64decode(answer["enveloped"])

    def decrypt(self, enveloped: bytes) -> bytes:
        return base64.b64decode(self.call("/v1/decrypt", {"enveloped": _b64(enveloped)})["content"])

    def certificate_status(self, certificate: x509.Certificate | bytes,
                           chain: Sequence[x509.Certificate | bytes] = ()) -> dict[str, Any]:
        return self.call("/v1/certificates/status", {
            "certificate": _b64(_cert_der(certificate)),
            "chain": [_b64(_cert_der(c)) for c in chain]})

    def cardholder_challenge(self) -> dict[str, Any]:
        answer = self.call("/v1/cardholder/challenge", {})
        answer["to_sign"] = base64.b64decode(answer["to_sign"])
        return answer

    def cardholder_verify(self, challenge_id: str, signature: bytes,
                          certificate: x509.Certificate | bytes) -> dict[str, Any]:
        return self.call("/v1/cardholder/verify", {
            "challenge_id": challenge_id, "signature": _b64(signature),
            "certificate": _b64(_cert_der(certificate))})

    def authenticate_cardholder(self, card_key: KeyHandle,
                                certificate: x509.Certificate | bytes) -> dict[str, Any]:
        """The whole exchange: get a challenge, have the card sign it, send the answer."""
        challenge = self.cardholder_challenge()
        signature = card_key.sign(challenge["to_sign"])
        return self.cardholder_verify(challenge["challenge_id"], signature, certificate)
