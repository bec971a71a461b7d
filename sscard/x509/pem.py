"""PEM armour: DER in, DER out, with precise errors for what is not PEM."""

from __future__ import annotations

from asn1crypto import pem as _pem


class PemError(ValueError):
    pass


def is_pem(data: bytes) -> bool:
    return _pem.detect(data)


def pem_to_der(data: bytes, expected_type: str | None = None) -> bytes:
    """Return the DER inside ``data``, which may be PEM or already DER."""
    if not is_pem(data):
        return data
    try:
        kind, _headers, der = _pem.unarmor(data)
    except ValueError as exc:
        raise PemError(f"malformed PEM: {exc}") from None
    if expected_type is not None and kind != expected_type:
        raise PemError(f"expected PEM type {expected_type!r}, found {kind!r}")
    return bytes(der)


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Every PEM block in a bundle, in order."""
    try:
        return [(k, bytes(d)) for k, _h, d in _pem.unarmor(data, multiple=True)]
    except ValueError as exc:
        raise PemError(f"malformed PEM: {exc}") from None


def der_to_pem(der: bytes, kind: str) -> bytes:
    return bytes(_pem.armor(kind, der))
