"""Fast encodings of request inputs on the issuance hot path: subject names and public keys.

Issuing a certificate for a public key and a textual subject (the KMC's and the batch path)
spends more time in asn1crypto building the Name and the SubjectPublicKeyInfo than in the SM2
signature itself. The common cases are simple, so they are written here directly as DER:

- a subject of CN/O/OU/L/ST (UTF8String) and C/serialNumber (PrintableString) attributes, one
  per RDN, in the order written, with no escapes: exactly what ``sscard.x509.names.parse_name``
  produces for the same text (the tests compare the bytes); anything else goes to parse_name;
- SM2 and EC public keys: a fixed SPKI prefix per curve followed by the uncompressed point, and
  the key identifier as SHA-1 of that point (RFC 5280 §4.2.1.2 method 1). RSA goes the long way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from asn1crypto import x509
from cryptography.hazmat.primitives import serialization

from sscard import der
from sscard.crypto.algorithms import KeyAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.x509.extensions import key_identifier
from sscard.x509.names import format_name, parse_name

# lower-case key -> (asn1crypto name, OID DER, string tag, short name as format_name writes it)
_ATTRS = {
    "cn": ("common_name", "2.5.4.3", 0x0C, "CN"),
    "o": ("organization_name", "2.5.4.10", 0x0C, "O"),
    "ou": ("organizational_unit_name", "2.5.4.11", 0x0C, "OU"),
    "l": ("locality_name", "2.5.4.7", 0x0C, "L"),
    "st": ("state_or_province_name", "2.5.4.8", 0x0C, "ST"),
    "c": ("country_name", "2.5.4.6", 0x13, "C"),
    "serialnumber": ("serial_number", "2.5.4.5", 0x13, "serialNumber"),
}
_OID_DER = {k: x509.NameType(v[1]).dump() for k, v in _ATTRS.items()}
_PRINTABLE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


@dataclass(frozen=True)
class Subject:
    der: bytes
    text: str  # as format_name writes it
    attributes: dict[str, str]  # asn1crypto attribute name -> first value
    #: every (attribute name, value) in order, for the profile's count and content rules
    pairs: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> x509.Name:
        """The asn1crypto Name, loaded only when someone asks (the hot path never does)."""
        return x509.Name.load(self.der)


def _fast_subject(text: str) -> Subject | None:
    stripped = text.strip()
    if not stripped or stripped.startswith("/") or "\\" in stripped or '"' in stripped:
        return None
    rdns = []
    shown = []
    attrs: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for part in stripped.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            return None
        key, value = (s.strip() for s in part.split("=", 1))
        found = _ATTRS.get(key.lower())
        if found is None or not value:
            return None
        name, _oid, tag, short = found
        if tag == 0x13 and (not set(value) <= _PRINTABLE
                            or (name == "country_name" and len(value) != 2)):
            return None  # parse_name gives the precise error
        rdns.append(der.tlv(0x31, der.sequence(_OID_DER[key.lower()],
                                               der.tlv(tag, value.encode("utf-8")))))
        shown.append(f"{short}={value}")
        attrs.setdefault(name, value)
        pairs.append((name, value))
    if not rdns:
        return None
    encoded = der.sequence(*rdns)
    return Subject(encoded, ", ".join(shown), attrs, tuple(pairs))


def subject_from_text(text: str) -> Subject:
    """Parse a textual subject; raises what ``parse_name`` raises for bad input."""
    fast = _fast_subject(text)
    if fast is not None:
        return fast
    return subject_from_name(parse_name(text))


def subject_from_name(name: x509.Name) -> Subject:
    attrs: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for rdn in name.chosen:
        for atv in rdn:
            pair = (str(atv["type"].native), str(atv["value"].native))
            attrs.setdefault(*pair)
            pairs.append(pair)
    return Subject(bytes(name.dump()), format_name(name), attrs, tuple(pairs))


_SPKI_PREFIX: dict[KeyAlgorithm, bytes] = {}


def _point(public_key: PublicKey) -> bytes | None:
    raw = public_key.raw
    if public_key.algorithm is KeyAlgorithm.SM2:
        return bytes(raw.point)
    if public_key.algorithm in (KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384):
        return bytes(raw.public_bytes(serialization.Encoding.X962,
                                      serialization.PublicFormat.UncompressedPoint))
    return None


def spki_and_key_id(public_key: PublicKey) -> tuple[bytes, bytes]:
    """(SubjectPublicKeyInfo DER, subjectKeyIdentifier) of ``public_key``."""
    point = _point(public_key)
    if point is None:
        return public_key.spki_der(), key_identifier(public_key)
    prefix = _SPKI_PREFIX.get(public_key.algorithm)
    if prefix is None:
        full = public_key.spki_der()
        assert full.endswith(point)
        prefix = _SPKI_PREFIX[public_key.algorithm] = full[: -len(point)]
    return prefix + point, hashlib.sha1(point).digest()  # noqa: S324 (RFC 5280 key id)
