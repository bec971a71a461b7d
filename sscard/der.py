"""A small DER writer for the hot paths: certificate TBS assembly and CRL entries (ca),
OCSP responses (ca.ocsp_der) and CMS signatures (sscard.cms.signed_template).

asn1crypto builds a Python object per ASN.1 node and encodes through several layers of method
calls; for one certificate, OCSP response or SignedData that costs several times the SM2
signature itself, and for a CRL with a million entries it takes minutes. The structures on these
paths are few and fixed (INTEGER, SEQUENCE, UTCTime/GeneralizedTime, OCTET STRING, ENUMERATED,
BIT STRING), so they are written here directly as bytes. Everything else is still encoded by
asn1crypto (and cached where it does not vary), and each user's tests check that its output
equals asn1crypto's, byte for byte.
"""

from __future__ import annotations

import datetime as dt

_GENERALIZED_FROM = dt.datetime(2050, 1, 1, tzinfo=dt.UTC)


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def integer(value: int) -> bytes:
    """DER INTEGER (two's complement, minimal length)."""
    size = (value.bit_length() + 8) // 8 if value >= 0 else ((~value).bit_length() + 8) // 8
    return tlv(0x02, value.to_bytes(max(size, 1), "big", signed=True))


def enumerated(value: int) -> bytes:
    return tlv(0x0A, value.to_bytes(max((value.bit_length() + 8) // 8, 1), "big", signed=True))


def octet_string(data: bytes) -> bytes:
    return tlv(0x04, data)


def bit_string(data: bytes) -> bytes:
    """A BIT STRING of whole octets (no unused bits): signatures and keys."""
    return tlv(0x03, b"\x00" + data)


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return when.astimezone(dt.UTC)


def generalized_time(when: dt.datetime) -> bytes:
    return tlv(0x18, _utc(when).strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def time(when: dt.datetime) -> bytes:
    """RFC 5280 §4.1.2.5 Time: UTCTime through 2049, GeneralizedTime from 2050."""
    when = _utc(when)
    if when >= _GENERALIZED_FROM:
        return generalized_time(when)
    return tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))


def extension(oid_der: bytes, value_der: bytes, critical: bool = False) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }."""
    return sequence(oid_der, b"\x01\x01\xff" if critical else b"", octet_string(value_der))


def explicit(tag_number: int, content: bytes) -> bytes:
    """A constructed context-specific [n] EXPLICIT wrapper."""
    return tlv(0xA0 | tag_number, content)
