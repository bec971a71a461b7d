"""Value types that cross package lines: certificate serial numbers and revocation reasons.

One parser and one printer of serials, and one spelling of revocation reasons (RFC 5280's
camelCase names, as OpenSSL prints them), used by every CLI, API and store.
"""

from __future__ import annotations

import enum
import re

#: RFC 5280 §4.1.2.2: a serial number is a positive integer of at most 20 octets
MAX_SERIAL_OCTETS = 20

# ``openssl x509 -text`` prints small serials as "4660 (0x1234)"
_DECIMAL_WITH_HEX = re.compile(r"^(\d+)\s*\((0x[0-9A-Fa-f]+)\)$")


class Serial(int):
    """A certificate serial number: a positive int that prints as ``openssl x509 -serial`` does
    (upper-case hexadecimal, an even number of digits)."""

    def __new__(cls, value: int) -> Serial:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"a serial is an int, not {type(value).__name__} (use Serial.parse)")
        if value <= 0:
            raise ValueError(f"serial {value} must be positive")
        if value.bit_length() > MAX_SERIAL_OCTETS * 8:
            raise ValueError(f"serial {value:X} is longer than {MAX_SERIAL_OCTETS} octets")
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, text: str | int) -> Serial:
        """From what ``openssl x509 -serial`` (``serial=0A1B``) or ``-text`` (``0a:1b``,
        ``4660 (0x1234)``) prints, with or without colons or ``0x``; an int as it is."""
        if isinstance(text, int):
            return cls(text)
        if not isinstance(text, str):
            raise TypeError(f"a serial is text or an int, not {type(text).__name__}")
        cleaned = text.strip()
        if cleaned.lower().startswith("serial="):
            cleaned = cleaned[len("serial="):].strip()
        pair = _DECIMAL_WITH_HEX.match(cleaned)
        if pair:
            decimal, cleaned = int(pair.group(1)), pair.group(2)
        cleaned = cleaned.replace(":", "")
        if cleaned[:2].lower() == "0x":
            cleaned = cleaned[2:]
        if not cleaned or not re.fullmatch(r"[0-9A-Fa-f]+", cleaned):
            raise ValueError(f"serial {text!r:.80} is not hexadecimal")
        value = int(cleaned, 16)
        if pair and value != decimal:
            raise ValueError(f"serial {text!r:.80}: the decimal and hexadecimal values differ")
        return cls(value)

    @property
    def hex(self) -> str:
        """Upper-case hexadecimal, even number of digits (``openssl x509 -serial``)."""
        text = f"{int(self):X}"
        return text if len(text) % 2 == 0 else "0" + text

    def __str__(self) -> str:
        return self.hex

    def __repr__(self) -> str:
        return f"Serial(0x{self.hex})"


def serial_to_hex(serial: int) -> str:
    """The one printer: ``Serial(serial).hex``."""
    return Serial(serial).hex


def serial_from_hex(text: str) -> int:
    """The one parser: ``Serial.parse(text)``."""
    return Serial.parse(text)


class RevocationReason(enum.Enum):
    """RFC 5280 §5.3.1 CRLReason: the values are the codes, the names the one spelling printed
    by every CLI and API (as OpenSSL spells them). ``parse`` also accepts the snake_case names
    (``key_compromise``) that asn1crypto and older versions printed."""

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
        """From a name (case-insensitive; camelCase, snake_case or kebab-case), a code or a
        member; an unknown one is a ValueError naming the accepted spellings."""
        if isinstance(name, RevocationReason):
            return name
        if isinstance(name, int) and not isinstance(name, bool):
            try:
                return cls(name)
            except ValueError:
                raise ValueError(f"unknown CRL reason code {name}") from None
        if not isinstance(name, str):
            raise ValueError(f"a revocation reason is a name or a code, not {name!r:.40}")
        wanted = name.strip().replace("_", "").replace("-", "").lower()
        for member in cls:
            if member.name.lower() == wanted:
                return member
        names = ", ".join(m.name for m in cls if m is not cls.removeFromCRL)
        raise ValueError(f"unknown revocation reason {name!r:.60}; use one of {names}")

    @classmethod
    def from_asn1(cls, native: str) -> RevocationReason:
        """From asn1crypto's ``CRLReason.native`` (``key_compromise``, ``ca_compromise``)."""
        for code, asn1 in _ASN1_NAMES.items():
            if asn1 == native:
                return cls(code)
        return cls.parse(native)

    @property
    def asn1_name(self) -> str:
        """The name asn1crypto's ``CRLReason`` uses."""
        return _ASN1_NAMES[self.value]


_ASN1_NAMES = {
    0: "unspecified", 1: "key_compromise", 2: "ca_compromise", 3: "affiliation_changed",
    4: "superseded", 5: "cessation_of_operation", 6: "certificate_hold", 8: "remove_from_crl",
    9: "privilege_withdrawn", 10: "aa_compromise",
}
