"""Who is calling: a business system identified by a client certificate from our CA, presented
through mutual TLS or by a request signature (``sscard.httpsig``), checked for path, purpose and
revocation."""

from __future__ import annotations

import hashlib
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asn1crypto import x509

from sscard import httpsig
from sscard.clock import Clock, system_clock
from sscard.cms.verify import Verifier
from sscard.gateway.errors import GatewayError, unauthenticated
from sscard.validation import Purpose


@dataclass(frozen=True)
class Caller:
    system: str
    certificate: x509.Certificate
    method: str  # "mtls" or "request-signature"


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
                 replays: httpsig.ReplayStore | None = None,
                 identify: Callable[[bytes, x509.Certificate], str] | None = None, *,
                 clock: Clock = system_clock) -> None:
        self.verifier = verifier
        # certificate DER -> the system it is registered for (raises when none): never the CN
        self.identify = identify
        self.window = window
        self.signatures = httpsig.RequestVerifier(
            replays if replays is not None else httpsig.MemoryReplayStore(clock),
            timedelta(seconds=window), clock)
        self.client_cert_header = client_cert_header
        self._certs: dict[bytes, x509.Certificate] = {}
        self._lock = threading.Lock()

    def _certificate(self, der: bytes) -> x509.Certificate:
        cert_id = hashlib.sha256(der).digest()
        with self._lock:
            known = self._certs.get(cert_id)
        if known is not None:
            return known
        try:
            cert = httpsig.decode_certificate(der).certificate
        except httpsig.SignatureError as exc:
            raise unauthenticated(f"the caller's certificate is unusable: {exc}") from None
        with self._lock:
            if len(self._certs) > 10_000:
                self._certs.clear()
            self._certs[cert_id] = cert
        return cert

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
        cert: x509.Certificate | None = None
        if der is None and self.client_cert_header:
            text = headers.get(self.client_cert_header)
            if text:
                # nginx's $ssl_client_escaped_cert is URL-encoded; others escape newlines
                try:
                    cert = httpsig.decode_certificate(text).certificate
                except httpsig.SignatureError:
                    raise unauthenticated(
                        "the proxy's client-certificate header is not PEM") from None
        if der is not None:
            cert = self._certificate(der)
        if cert is None:
            how = "request-signature"
            admitted: list[str] = []
            cert = self._signed_request(headers, method, path, query, body,
                                        lambda c: admitted.append(self._admit(c)))
            system = admitted[0]
        else:
            system = self._admit(cert)
        return Caller(system, cert, how)

    def _admit(self, cert: x509.Certificate) -> str:
        """The business system the certificate is registered for (by fingerprint, never the
        CN), then its path: an unregistered certificate costs no validation or fetch."""
        if self.identify is None:
            raise unauthenticated("no business systems are registered")
        system = self.identify(cert.dump(), cert)
        self._check_path(cert)
        return system

    def _signed_request(self, headers: Mapping[str, str], method: str, path: str, query: str,
                        body: bytes, admit: Callable[[x509.Certificate], None]
                        ) -> x509.Certificate:
        if not httpsig.RequestVerifier.present(headers):
            raise unauthenticated(
                "no client certificate: use mutual TLS or sign the request "
                f"({httpsig.SIGNATURE} and related headers)")
        try:
            return self.signatures.verify(
                headers, method, path, query, body,
                check=lambda signed: admit(signed.certificate)).certificate
        except httpsig.SignatureError as exc:
            raise GatewayError(exc.code.upper(), exc.message, 401) from None
        except httpsig.ReplayStoreUnavailable as exc:
            raise GatewayError("REPLAY_MEMORY_UNAVAILABLE", str(exc), 503) from None
