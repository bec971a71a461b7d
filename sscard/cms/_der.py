"""A minimal DER writer for the signing hot path (``signed_template``).

asn1crypto builds a Python object per node and encodes through several layers; for one
SignedData that costs more than the SM2 signature itself. The variable parts of a signature
(time, digest, signature value, content) are few and simple, so they are written here; every
constant part is encoded by asn1crypto once, and the tests check that the output equals
asn1crypto's byte for byte.
"""

from __future__ import annotations

import datetime as dt


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length(len(content)) + content


def signing_time(when: dt.datetime) -> bytes:
    """CMS Time: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5652 §11.3)."""
    when = when.astimezone(dt.UTC)
    if when.year >= 2050:
        return tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode("ascii"))
    return tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
