"""Byte codecs used on the card: one-byte-tag TLV records, packed BCD (``cn``), ``an`` text and
GBK names, each padded to its fixed field length as CARD_SPEC §1 prescribes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


class CodecError(ValueError):
    """Bytes or a value that do not fit the card's encoding."""


@dataclass(frozen=True)
class Tlv:
    """One record: tag (1 byte), length (1 byte), value."""

    tag: int
    value: bytes

    def encode(self) -> bytes:
        if not 0 <= self.tag <= 0xFF:
            raise CodecError(f"TLV tag {self.tag:#x} does not fit one byte")
        if len(self.value) > 0xFF:
            raise CodecError(
                f"TLV value of tag {self.tag:02X} is {len(self.value)} bytes (max 255)"
            )
        return bytes([self.tag, len(self.value)]) + self.value


def tlv_decode(data: bytes) -> Tlv:
    """Exactly one TLV; raises CodecError if the length byte disagrees with the data."""
    if len(data) < 2:
        raise CodecError(f"TLV record too short ({len(data)} bytes)")
    tag, length = data[0], data[1]
    if len(data) != 2 + length:
        raise CodecError(
            f"TLV record tag {tag:02X} declares {length} value bytes but carries {len(data) - 2}"
        )
    return Tlv(tag, bytes(data[2:]))


def tlv_iter(data: bytes) -> Iterator[Tlv]:
    """Consecutive TLVs (1-byte tag, 1-byte length)."""
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise CodecError(f"truncated TLV header at offset {pos}")
        tag, length = data[pos], data[pos + 1]
        end = pos + 2 + length
        if end > len(data):
            raise CodecError(f"TLV tag {tag:02X} at offset {pos} runs past the end")
        yield Tlv(tag, bytes(data[pos + 2 : end]))
        pos = end


# --- BCD (cn): digits packed two per byte, right-padded with F nibbles ---------------------------


def bcd_encode(digits: str, length: int | None = None) -> bytes:
    """Pack decimal digits; pad with F nibbles to ``length`` bytes (or to a whole byte)."""
    if not digits.isascii() or not digits.isdigit():
        raise CodecError(f"BCD field needs decimal digits only, got {digits!r}")
    nibbles = digits
    size = length if length is not None else (len(digits) + 1) // 2
    if len(nibbles) > size * 2:
        raise CodecError(f"{len(digits)} digits do not fit a {size}-byte BCD field")
    nibbles = nibbles + "F" * (size * 2 - len(nibbles))
    return bytes.fromhex(nibbles)


def bcd_decode(data: bytes) -> str:
    """Unpack BCD, stopping at the first F nibble; other non-digit nibbles are an error."""
    out = []
    for nibble in data.hex().upper():
        if nibble == "F":
            break
        if not nibble.isdigit():
            raise CodecError(f"BCD field {data.hex().upper()} holds non-digit nibble {nibble}")
        out.append(nibble)
    return "".join(out)


# --- an: ASCII right-padded with 00 (readers strip 00 and FF) ------------------------------------


def an_encode(text: str, length: int) -> bytes:
    if not text.isascii() or not text.isprintable():
        raise CodecError(f"'an' field needs printable ASCII, got {text!r}")
    raw = text.encode("ascii")
    if len(raw) > length:
        raise CodecError(f"{text!r} is {len(raw)} characters, the field holds {length}")
    return raw + b"\x00" * (length - len(raw))


def strip_padding(data: bytes) -> bytes:
    return data.rstrip(b"\x00\xff")


def an_decode(data: bytes) -> str:
    raw = strip_padding(data)
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise CodecError(f"'an' field {data.hex().upper()} is not ASCII") from None


# --- GBK names ----------------------------------------------------------------------------------


def gbk_encode(text: str, length: int) -> bytes:
    try:
        raw = text.encode("gbk")
    except UnicodeEncodeError as exc:
        raise CodecError(f"{text!r}: character {exc.object[exc.start]!r} has no GBK encoding") \
            from None
    if len(raw) > length:
        raise CodecError(f"{text!r} is {len(raw)} bytes in GBK, the field holds {length}")
    return raw + b"\x00" * (length - len(raw))


def gbk_decode(data: bytes) -> str:
    raw = strip_padding(data)
    try:
        return raw.decode("gbk")
    except UnicodeDecodeError:
        raise CodecError(f"field {data.hex().upper()} is not valid GBK") from None


def split_gbk_name(name: str, first: int = 30, extension: int = 20) -> tuple[bytes, bytes]:
    """Split a full name over the name field (tag 09) and the name extension (tag 4E) without
    cutting a two-byte GBK character in half."""
    gbk_encode(name, first + extension)  # whole name must be GBK and fit both fields
    used = 0
    cut = len(name)
    for index, char in enumerate(name):
        size = len(char.encode("gbk"))
        if used + size > first:
            cut = index
            break
        used += size
    return gbk_encode(name[:cut], first), gbk_encode(name[cut:], extension)
