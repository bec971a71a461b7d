"""Plain values the CA hands to its callers: revocation reasons, status, issued certificates."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509


class RevocationReason(enum.Enum):
    """RFC 5280 §5.3.1 CRLReason; the values are the codes, the names as OpenSSL/CLI spell them."""

    unspecified = 0
    keyCompromise = 1
    cACompromise = 2
    affiliationChanged = 3
    superseded = 4
    cessationOfOperation = 5
    certificateHold = 6
    removeFromCRL = 8
    privilegeWithdrawn = 9
    aACompromise = 10

    @classmethod
    def parse(cls, name: str | int | RevocationReason) -> RevocationReason:
        """From a CLI name (case-insensitive, ``key_compromise`` too), a code or a member."""
        if isinstance(name, RevocationReason):
            return name
        if isinstance(name, int):
            try:
                return cls(name)
            except ValueError:
                raise ValueError(f"unknown CRL reason code {name}") from None
        wanted = name.replace("_", "").replace("-", "").lower()
        for member in cls:
            if member.name.lower() == wanted:
                return member
        names = ", ".join(m.name for m in cls if m is not cls.removeFromCRL)
        raise ValueError(f"unknown revocation reason {name!r}; use one of {names}")

    @property
    def asn1_name(self) -> str:
        """The name asn1crypto's ``CRLReason`` uses."""
        return {
            0: "unspecified", 1: "key_compromise", 2: "ca_compromise",
            3: "affiliation_changed", 4: "superseded", 5: "cessation_of_operation",
            6: "certificate_hold", 8: "remove_from_crl", 9: "privilege_withdrawn",
            10: "aa_compromise",
        }[self.value]


class Status(enum.Enum):
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

    @property
    def serial_hex(self) -> str:
        """As ``openssl x509 -serial`` prints it (upper case, even number of digits)."""
        return serial_to_hex(self.serial)


def serial_to_hex(serial: int) -> str:
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def serial_from_hex(text: str) -> int:
    """Accepts ``openssl x509 -serial`` output (``serial=ABCD``), colons and ``0x`` too."""
    cleaned = text.strip()
    if cleaned.lower().startswith("serial="):
        cleaned = cleaned[7:]
    cleaned = cleaned.replace(":", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise ValueError(f"serial {text!r} is not hexadecimal") from None
    if value <= 0:
        raise ValueError(f"serial {text!r} must be positive")
    return value
