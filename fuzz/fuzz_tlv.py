"""Fuzz the card's TLV records (sscard.card.codec) and the EF05/EF06 data built from them.

Allowed: CodecError and CardDataError (both ValueError subclasses naming the fault)."""

from __future__ import annotations

import _common

with _common.instrumented():
    from sscard.card.codec import CodecError, tlv_decode, tlv_iter
    from sscard.card.records import CardData, HolderData
    from sscard.card.validation import CardDataError


def test_one_input(data: bytes) -> None:
    try:
        tlv = tlv_decode(data)
        if tlv.encode() != data:
            raise AssertionError("a decoded TLV does not re-encode to its input")
    except CodecError:
        pass
    try:
        records = {t.tag: t.value for t in tlv_iter(data)}
    except CodecError:
        return
    for kind in (CardData, HolderData):
        try:
            parsed = kind.from_records(records)
        except (CodecError, CardDataError):
            continue
        try:
            parsed.validate()
        except (CodecError, CardDataError):
            continue
        parsed.records()


def seeds() -> list[bytes]:
    ef05 = bytes.fromhex(
        "0110" + "35010086000000000000000000000001" + "020131" + "030432303030"
        + "040c" + "350100000000000000000000" + "040420200101"[4:] + "05042020010106042030010107"
        "09" + "583030303030303031")
    ef06 = bytes.fromhex("0812" + "333530313032313939303031303131323334" + "091e"
                         + "d5c5c8fd" + "20" * 26 + "0a0131" + "0b0101" + "0c03313536"
                         + "0d0420000101")
    return [ef05, ef06, bytes.fromhex("0103414243"), b""]


if __name__ == "__main__":
    _common.main(test_one_input, seeds)
