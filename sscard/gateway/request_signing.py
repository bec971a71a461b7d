"""Request signatures: how a business system proves who it is without mutual TLS.

The caller signs, with its certificate's key, a canonical text of the request::

    SSCARD-REQUEST-V1
    <METHOD>
    <path>
    <query string>
    <X-Sscard-Date, e.g. 2026-11-28T16:50:10Z>
    <X-Sscard-Nonce, 32 hex digits>
    <SHA-256 of the body, hex>

and sends the signature (base64, DER for SM2/ECDSA) in ``X-Sscard-Signature`` and its
certificate (base64 DER) in ``X-Sscard-Certificate``. The gateway accepts a date within its
window and each (certificate, nonce) once, so a captured request cannot be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime

from asn1crypto import x509

from sscard.keys.base import KeyHandle

DATE = "X-Sscard-Date"
NONCE = "X-Sscard-Nonce"
SIGNATURE = "X-Sscard-Signature"
CERTIFICATE = "X-Sscard-Certificate"
PREFIX = "SSCARD-REQUEST-V1"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def canonical(method: str, path: str, query: str, date: str, nonce: str, body: bytes) -> bytes:
    return "\n".join([PREFIX, method.upper(), path, query, date, nonce,
                      hashlib.sha256(body).hexdigest()]).encode()


def sign_request(key: KeyHandle, certificate: x509.Certificate | bytes, method: str, path: str,
                 query: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
    """The headers that authenticate one request. Pass the certificate as DER bytes on hot
    paths (asn1crypto re-encodes a certificate built in memory on every dump)."""
    cert_der = certificate if isinstance(certificate, bytes) else certificate.dump()
    date = (now or datetime.now(UTC)).astimezone(UTC).strftime(DATE_FORMAT)
    nonce = secrets.token_hex(16)
    signature = key.sign(canonical(method, path, query, date, nonce, body))
    return {
        DATE: date,
        NONCE: nonce,
        SIGNATURE: base64.b64encode(signature).decode(),
        CERTIFICATE: base64.b64encode(cert_der).decode(),
    }


def parse_date(text: str) -> datetime:
    return datetime.strptime(text, DATE_FORMAT).replace(tzinfo=UTC)
