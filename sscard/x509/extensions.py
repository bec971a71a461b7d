"""Helpers for common extension values."""

from __future__ import annotations

from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.hashes import digest


def key_identifier(public_key: PublicKey) -> bytes:
    """RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING contents."""
    bits = public_key.asn1()["public_key"].contents[1:]  # drop the unused-bits octet
    return digest("sha1", bits)
