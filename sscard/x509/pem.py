"""PEM armour: DER in, DER out, with precise errors for what is not PEM.

The one PEM reader of the code base. It runs in time linear in its input (asn1crypto's
``unarmor`` is quadratic: a 4 MiB file took minutes, a 10 MB request body 42 s) and refuses
input over :data:`MAX_PEM_BYTES` before looking at it.
"""

from __future__ import annotations

import binascii
import re

from asn1crypto import pem as _pem

#: the largest PEM text read (a large CRL fits; a request body of garbage does not matter)
MAX_PEM_BYTES = 64 * 1024 * 1024

_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9][A-Z0-9 ]{0,62}[A-Z0-9]|[A-Z0-9])-----")
_WHITESPACE = b" \t\r\n\v\f"


class PemError(ValueError):
    pass


def is_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data


def _body_to_der(body: bytes, kind: str) -> bytes:
    if b":" in body:
        # RFC 1421 headers (Proc-Type, DEK-Info) end at the first empty line
        lines = body.strip(_WHITESPACE).split(b"\n")
        if b":" not in lines[0]:
            raise PemError(f"{kind}: ':' inside the base64 text")
        for i, line in enumerate(lines):
            if not line.strip(_WHITESPACE):
                body = b"\n".join(lines[i + 1:])
                break
        else:
            raise PemError(f"{kind}: headers without the empty line that ends them")
    text = body.translate(None, _WHITESPACE)
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise PemError(f"{kind}: the base64 text is invalid ({exc})") from None


def _blocks(data: bytes, max_bytes: int, first_only: bool) -> list[tuple[str, bytes]]:
    if len(data) > max_bytes:
        raise PemError(f"PEM input of {len(data)} bytes is over the limit of {max_bytes}")
    blocks: list[tuple[str, bytes]] = []
    pos = 0
    while (begin := _BEGIN.search(data, pos)) is not None:
        kind = begin.group(1).decode("ascii")
        end_line = b"-----END " + begin.group(1) + b"-----"
        end = data.find(end_line, begin.end())
        if end < 0:
            raise PemError(f"malformed PEM: no '-----END {kind}-----' line")
        blocks.append((kind, _body_to_der(data[begin.end():end], kind)))
        if first_only:
            break
        pos = end + len(end_line)
    if not blocks:
        raise PemError("malformed PEM: no '-----BEGIN ...-----' line")
    return blocks


def pem_blocks(data: bytes, max_bytes: int = MAX_PEM_BYTES) -> list[tuple[str, bytes]]:
    """Every PEM block in a bundle, in order, as (type, DER); text between blocks is
    ignored (as OpenSSL does). PemError when none is found or one is malformed."""
    return _blocks(data, max_bytes, first_only=False)


def first_pem_block(data: bytes, max_bytes: int = MAX_PEM_BYTES) -> tuple[str, bytes]:
    """The first PEM block, as (type, DER); what follows it is not read."""
    return _blocks(data, max_bytes, first_only=True)[0]


def pem_to_der(data: bytes, expected_type: str | None = None,
               max_bytes: int = MAX_PEM_BYTES) -> bytes:
    """Return the DER inside ``data``, which may be PEM (the first block) or already DER."""
    if not is_pem(data):
        return data
    kind, der = first_pem_block(data, max_bytes)
    if expected_type is not None and kind != expected_type:
        raise PemError(f"expected PEM type {expected_type!r}, found {kind!r}")
    return der


def der_to_pem(der: bytes, kind: str) -> bytes:
    return bytes(_pem.armor(kind, der))
