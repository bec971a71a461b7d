"""Plain values the CA hands to its callers: revocation reasons, status, issued certificates."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509

# the value types live in the foundation; imported from here by the CA's callers
from sscard.x509.values import RevocationReason as RevocationReason
from sscard.x509.values import serial_from_hex as serial_from_hex
from sscard.x509.values import serial_to_hex

#: entries of one batch issuance request over the API (``POST /api/v1/certificates/batch``)
MAX_BATCH_ITEMS = 100


class Status(enum.StrEnum):
    """A certificate's status; GOOD and REVOKED are also what the database column holds."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CertificateStatus:
    """What OCSP and the CLI need to know about one serial."""

    serial: int
    status: Status
    revocation_time: datetime | None = None
    reason: RevocationReason | None = None
    invalidity_date: datetime | None = None
    certificate_der: bytes | None = None


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate whose row is committed: only these are handed out."""

    serial: int
    profile: str
    der: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.Certificate.load(self.der)

    @functools.cached_property
    def serial_hex(self) -> str:
        """As ``openssl x509 -serial`` prints it (upper case, even number of digits)."""
        return serial_to_hex(self.serial)
