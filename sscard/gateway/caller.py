"""Who is calling: a business system identified by a client certificate from our CA, presented
through mutual TLS or by a request signature, checked for path, purpose and revocation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from asn1crypto import x509

from sscard.cms.verify import Verifier
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError, InvalidSignature
from sscard.gateway import request_signing as rs
from sscard.gateway.errors import GatewayError, unauthenticated
from sscard.validation import Purpose
from sscard.x509.errors import X509ParseError
from sscard.x509.parse import load_certificate


@dataclass(frozen=True)
class Caller:
    system: str
    certificate: x509.Certificate
    method: str  # "mtls" or "request-signature"


class NonceCache:
    """Remembers (certificate, nonce) pairs for the signature window, to refuse replays."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: dict[tuple[bytes, str], float] = {}
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic() + window

    def first_use(self, cert_id: bytes, nonce: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now > self._next_sweep:
                self._seen = {k: t for k, t in self._seen.items() if t > now}
                self._next_sweep = now + self.window
            key = (cert_id, nonce)
            if key in self._seen and self._seen[key] > now:
                return False
            self._seen[key] = now + 2 * self.window
            return True


def _peer_certificate_der(environ: Mapping[str, Any]) -> bytes | None:
    pem = environ.get("SSL_CLIENT_CERT")  # werkzeug's TLS server
    if pem:
        return ssl.PEM_cert_to_DER_cert(pem)
    sock = environ.get("gunicorn.socket")  # gunicorn with --cert-reqs 2
    if isinstance(sock, ssl.SSLSocket):
        der = sock.getpeercert(binary_form=True)
        return der or None
    return None


class CallerAuthenticator:
    def __init__(self, verifier: Verifier, window: float, client_cert_header: str | None = None,
                 identify: Callable[[bytes, x509.Certificate], str] | None = None) -> None:
        self.verifier = verifier
        # certificate DER -> the system it is registered for (raises when none): never the CN
        self.identify = identify
        self.window = window
        self.nonces = NonceCache(window)
        self.client_cert_header = client_cert_header
        self._keys: dict[bytes, tuple[PublicKey, x509.Certificate]] = {}
        self._lock = threading.Lock()

    def _certificate(self, der: bytes) -> tuple[bytes, x509.Certificate, PublicKey]:
        cert_id = hashlib.sha256(der).digest()
        with self._lock:
            known = self._keys.get(cert_id)
        if known is not None:
            return cert_id, known[1], known[0]
        try:
            cert = load_certificate(der)
            key = PublicKey.from_spki(cert.public_key.dump())
        except (X509ParseError, CryptoError) as exc:
            raise unauthenticated(f"the caller's certificate is unusable: {exc}") from None
        with self._lock:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[cert_id] = (key, cert)
        return cert_id, cert, key

    def _check_path(self, cert: x509.Certificate) -> None:
        result = self.verifier.validate(cert, (), None, with_revocation=True,
                                        purpose=Purpose.CLIENT)
        if not result.valid:
            why = "; ".join(f"{r.code.value}: {r.message}" for r in result.reasons)
            raise unauthenticated(f"the caller's certificate is not acceptable: {why}")

    def authenticate(self, environ: Mapping[str, Any], headers: Any, method: str,
                     path: str, query: str, body: bytes) -> Caller:
        der = _peer_certificate_der(environ)
        how = "mtls"
        if der is None and self.client_cert_header:
            pem = headers.get(self.client_cert_header)
            if pem:
                # nginx's $ssl_client_escaped_cert is URL-encoded; others escape newlines
                text = unquote(pem).replace("\\n", "\n")
                try:
                    der = ssl.PEM_cert_to_DER_cert(text)
                except ValueError:
                    raise unauthenticated(
                        "the proxy's client-certificate header is not PEM") from None
        if der is None:
            how = "request-signature"
            der = self._signed_request(headers, method, path, query, body)
        _cert_id, cert, _key = self._certificate(der)
        if self.identify is None:
            raise unauthenticated("no business systems are registered")
        # before the path check: an unregistered certificate costs no validation or fetch
        system = self.identify(der, cert)
        self._check_path(cert)
        return Caller(system, cert, how)

    def _signed_request(self, headers: Mapping[str, str], method: str, path: str, query: str,
                        body: bytes) -> bytes:
        values = {h: headers.get(h) for h in (rs.DATE, rs.NONCE, rs.SIGNATURE, rs.CERTIFICATE)}
        missing = [h for h, v in values.items() if not v]
        if len(missing) == 4:
            raise unauthenticated(
                "no client certificate: use mutual TLS or sign the request "
                f"({rs.SIGNATURE} and related headers)")
        if missing:
            raise unauthenticated(f"request signature headers missing: {', '.join(missing)}")
        date, nonce = str(values[rs.DATE]), str(values[rs.NONCE])
        try:
            when = rs.parse_date(date)
            der = base64.b64decode(str(values[rs.CERTIFICATE]), validate=True)
            signature = base64.b64decode(str(values[rs.SIGNATURE]), validate=True)
        except (ValueError, binascii.Error):
            raise unauthenticated(
                f"malformed request signature headers ({rs.DATE} must look like "
                "2026-11-28T16:50:10Z; the others base64)") from None
        skew = abs((datetime.now(UTC) - when).total_seconds())
        if skew > self.window:
            raise GatewayError("REQUEST_EXPIRED",
                               f"the request is dated {date}, {skew:.0f} s from the gateway's "
                               f"clock (window {self.window:.0f} s)", 401)
        if len(nonce) < 16 or len(nonce) > 64:
            raise unauthenticated(f"{rs.NONCE} must be 16 to 64 characters")
        cert_id, _cert, key = self._certificate(der)
        try:
            key.verify(signature, rs.canonical(method, path, query, date, nonce, body))
        except (InvalidSignature, CryptoError, ValueError):
            raise unauthenticated("the request signature does not verify") from None
        if not self.nonces.first_use(cert_id, nonce):
            raise GatewayError("REPLAYED_REQUEST", "this signed request was already used", 401)
        return der
