"""The parts of a signed X.509 structure, read off its DER without asn1crypto.

A certificate, a CRL and a CSR share one outer form (RFC 5280 §4.1, §5.1; RFC 2986 §4.2)::

    SEQUENCE { signed part, AlgorithmIdentifier, BIT STRING signature }

Reading the signed part as octets from the encoding a value was parsed from spares asn1crypto's
``dump()``, which first walks everything parsed of the value for changes (and re-encodes a
changed one): a validator reads the signed parts of the same CA certificates and CRLs on every
validation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SignedParts:
    signed: bytes
    """The signed part's whole encoding (header included): what the signature covers."""
    algorithm: bytes
    """The signature AlgorithmIdentifier's encoding."""
    signature_bits: bytes
    """The signature BIT STRING's contents: the unused-bits octet, then the bits."""

    @property
    def signature(self) -> bytes | None:
        """The signature's octets, or None when its bit count is not a whole number of
        octets (then no X.509 signature algorithm can have made it)."""
        if self.signature_bits[:1] != b"\x00":
            return None
        return self.signature_bits[1:]


def _element(data: bytes, start: int) -> tuple[int, int]:
    """Where the contents of the DER element at ``start`` begin and where it ends (X.690
    §8.1.2-8.1.3, definite lengths only)."""
    index = start + 1
    if data[start] & 0x1F == 0x1F:  # tag number 31 and up: more identifier octets
        while data[index] & 0x80:
            index += 1
        index += 1
    first = data[index]
    index += 1
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise ValueError("an indefinite length, not DER")
    else:
        count = first & 0x7F
        length = int.from_bytes(data[index : index + count], "big")
        index += count
    end = index + length
    if end > len(data):
        raise ValueError("an element runs past the end of the encoding")
    return index, end


def signed_parts(encoded: bytes) -> SignedParts:
    """The parts of ``encoded``: the DER of a value that asn1crypto parsed as a certificate,
    CRL or CSR (whose form it has therefore already checked). Read by hand, as asn1crypto's
    parser costs more than the dump() it would spare. Raises ValueError on an indefinite
    length (BER) or a truncated encoding."""
    signed_start, outer_end = _element(encoded, 0)
    _, signed_end = _element(encoded, signed_start)
    _, algorithm_end = _element(encoded, signed_end)
    bits_start, bits_end = _element(encoded, algorithm_end)
    if bits_end > outer_end:
        raise ValueError("the signature runs past the end of the signed structure")
    return SignedParts(
        encoded[signed_start:signed_end],
        encoded[signed_end:algorithm_end],
        encoded[bits_start:bits_end],
    )
