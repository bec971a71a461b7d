"""Calling the KMC service over HTTP: what the CA, the RA and card terminals use.

The CA's part of the dual-certificate flow (DESIGN §6.1) is two calls::

    kmc = KmcClient("https://kmc.example:8470", api_key)
    escrow = kmc.escrow(owner=ssn, recipient_public_key=card_signing_spki)
    cert = issue_encryption_certificate(PublicKey.from_spki(escrow.public_key_spki), ...)
    kmc.attach_certificate(escrow.key_id, cert.dump())
    # the card then imports escrow.enveloped_key_blob (CardClient.import_enveloped_key)

A terminal without a PSAM authenticates cards through :class:`RemoteAuthenticator`, an
``sscard.card.auth.Authenticator`` whose cryptograms the KMC computes.

Errors come back as :class:`KmcServiceError` with the status, stable code (``kind``) and detail
of the service's RFC 9457 problem document; any other error answer is ``bad_answer``.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from keymgmt.records import EscrowResult, RecoveryResult
from sscard import problem
from sscard.card.auth import Authenticator, CardIdentity
from sscard.httpsig import RequestSigner


class KmcServiceError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"KMC answered {status} {kind}: {message}")
        self.status = status
        self.kind = kind
        self.message = message


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


class KmcClient:
    """A session with the KMC API under one caller's API key, or as a service identity that
    signs each request (``signer``: ``sscard.httpsig.RequestSigner`` with its certificate).
    ``session``: the requests session to call through (one with a TLS client certificate for
    a KMC that asks for them, ``sscard.tls_client.ClientTls.session``)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 30.0,
                 verify: bool | str = True, signer: RequestSigner | None = None,
                 terminal_id: str | None = None,
                 session: requests.Session | None = None) -> None:
        if (api_key is None) == (signer is None):
            raise ValueError("give an API key or a request signer (one of them)")
        self.base_url = base_url.rstrip("/") + "/kmc/v1"
        self._path = urlsplit(self.base_url).path
        #: a terminal bound to its terminal / PSAM number names it in every card-key call
        self.terminal_id = terminal_id
        self.timeout = timeout
        self._signer = signer
        # a given session brings its own transport: mutual TLS (sscard.tls_client.ClientTls)
        self._session = session or requests.Session()
        if api_key is not None:
            self._session.headers["Authorization"] = f"Bearer {api_key}"
        self._session.verify = verify

    def __repr__(self) -> str:  # never the API key
        return f"KmcClient({self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        query = urlencode(params or {})
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self._signer is not None:
            headers.update(self._signer.headers(method, self._path + path, query, data))
        url = self.base_url + path + (f"?{query}" if query else "")
        try:
            response = self._session.request(method, url, data=data or None, headers=headers,
                                             timeout=self.timeout)
        except requests.RequestException as exc:
            raise KmcServiceError(0, "unreachable", str(exc)) from None
        if response.status_code >= 400:
            found = problem.parse(response.status_code, response.headers.get("Content-Type"),
                                  response.content)
            raise KmcServiceError(found.status, found.code, found.detail)
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            raise KmcServiceError(response.status_code, "bad_answer",
                                  "the KMC did not answer JSON") from None
        return answer

    # -- CA / RA ---------------------------------------------------------------------------
    def escrow(self, owner: str, recipient_public_key: bytes, algorithm: str = "sm2",
               request_id: str | None = None) -> EscrowResult:
        """``request_id``: the caller's own id for this escrow; asked again with it (after a
        lost answer), the KMC returns the same key, enveloped afresh."""
        body = {"owner": owner, "algorithm": algorithm,
                "recipient_public_key": _b64(recipient_public_key)}
        if request_id is not None:
            body["request_id"] = request_id
        d = self._call("POST", "/escrow", body)
        return EscrowResult(d["key_id"], d["owner"], d["algorithm"],
                            _unb64(d["public_key"]) or b"", _unb64(d["sm2_enveloped_key"]),
                            _unb64(d["enveloped_key_blob"]), _unb64(d.get("enveloped_pkcs8")))

    def attach_certificate(self, key_id: str, certificate_der: bytes) -> str:
        d = self._call("POST", f"/keys/{key_id}/certificate",
                       {"certificate": _b64(certificate_der)})
        return str(d["certificate_serial"])

    # -- recovery --------------------------------------------------------------------------
    def request_recovery(self, *, reason: str, card_public_key: bytes | None = None,
                         officer: str | None = None, **selector: str) -> dict[str, Any]:
        recipient = ({"card_public_key": _b64(card_public_key)} if card_public_key is not None
                     else {"officer": officer})
        return self._call("POST", "/recoveries", {"reason": reason, "recipient": recipient,
                                                  **selector})

    def approve(self, request_id: str, comment: str = "") -> dict[str, Any]:
        return self._call("POST", f"/recoveries/{request_id}/approve", {"comment": comment})

    def reject(self, request_id: str, comment: str) -> dict[str, Any]:
        return self._call("POST", f"/recoveries/{request_id}/reject", {"comment": comment})

    def complete_recovery(self, request_id: str) -> RecoveryResult:
        d = self._call("POST", f"/recoveries/{request_id}/complete", {})
        return RecoveryResult(d["request_id"], d["key_id"], _unb64(d["sm2_enveloped_key"]),
                              _unb64(d["enveloped_key_blob"]), _unb64(d["pkcs12"]),
                              d["pkcs12_passphrase"])

    # -- card terminals --------------------------------------------------------------------
    def _card(self, card: CardIdentity) -> dict[str, Any]:
        out: dict[str, Any] = {"region_code": card.region_code, "atr": _b64(card.atr),
                               "algorithm_flag": card.algorithm.value}
        if self.terminal_id is not None:
            out["terminal_id"] = self.terminal_id
        return out

    def external_cryptogram(self, key_id: int, card: CardIdentity, challenge: bytes) -> bytes:
        d = self._call("POST", "/card-auth/external",
                       {**self._card(card), "key_id": key_id, "challenge": _b64(challenge)})
        return _unb64(d["cryptogram"]) or b""

    def internal_check(self, card: CardIdentity, process_factor: bytes, data: bytes) -> bytes:
        d = self._call("POST", "/card-auth/internal",
                       {**self._card(card), "process_factor": _b64(process_factor),
                        "data": _b64(data)})
        return _unb64(d["expected"]) or b""

    def pin_command(self, key_id: int, card: CardIdentity, challenge: bytes, header: bytes,
                    pin: str) -> bytes:
        d = self._call("POST", "/card-auth/pin-command",
                       {**self._card(card), "key_id": key_id, "challenge": _b64(challenge),
                        "header": _b64(header), "new_pin": pin})
        return _unb64(d["data"]) or b""

    def hsm_step(self, step1_line: str) -> str:
        return str(self._call("POST", "/card-auth/hsm-step", {"step1": step1_line})["step2_key"])


class RemoteAuthenticator(Authenticator):
    """Card authentication through the KMC service (terminals without a PSAM)."""

    def __init__(self, client: KmcClient) -> None:
        self.client = client

    def external_cryptogram(self, key_id: int, card: CardIdentity, challenge: bytes) -> bytes:
        return self.client.external_cryptogram(key_id, card, challenge)

    def internal_expected(self, card: CardIdentity, process_factor: bytes, data: bytes) -> bytes:
        return self.client.internal_check(card, process_factor, data)

    def pin_command_data(self, key_id: int, card: CardIdentity, challenge: bytes,
                         header: bytes, pin: str) -> bytes:
        return self.client.pin_command(key_id, card, challenge, header, pin)
