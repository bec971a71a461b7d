"""The card client's T=0 handling (61xx: GET RESPONSE; 6Cxx: repeat with the right Le) against
cards that answer oddly or hostilely: the data is reassembled exactly, and a card that never
stops saying "more data" gets a clear error instead of a client that loops for ever."""

from __future__ import annotations

import pytest

from sscard.card.apdu import CommandApdu
from sscard.card.client import CardClient
from sscard.card.errors import BadData
from sscard.card.transport import InProcessTransport


class ScriptedCard:
    """A card that answers with a script: ``answer(apdu bytes) -> response bytes``."""

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        self.answer = answer
        self.seen: list[bytes] = []

    def power_on(self) -> bytes:
        return bytes.fromhex("3B00")

    def power_off(self) -> None:
        pass

    def process(self, raw: bytes) -> bytes:
        self.seen.append(raw)
        return self.answer(raw)


def client_for(card: ScriptedCard) -> CardClient:
    client = CardClient(InProcessTransport(card))
    client.connect()
    return client


def test_data_in_several_get_responses_is_reassembled() -> None:
    chunks = [b"A" * 0x10, b"B" * 0x10, b"C" * 4]

    def answer(raw: bytes) -> bytes:
        if raw[1] == 0xA4:
            return b"\x61\x10"
        chunk = chunks.pop(0)
        return chunk + (b"\x61" + bytes([len(chunks[0])]) if chunks else b"\x90\x00")

    card = ScriptedCard(answer)
    assert client_for(card).send(CommandApdu(0, 0xA4, 4, 0, b"\x01\x02"), "SELECT") == \
        b"A" * 16 + b"B" * 16 + b"C" * 4
    assert [r[:5].hex() for r in card.seen[1:]] == ["00c0000010", "00c0000010", "00c0000004"]


def test_wrong_le_on_get_response_is_repeated_with_the_right_one() -> None:
    def answer(raw: bytes) -> bytes:
        if raw[1] == 0xA4:
            return b"\x61\x00"  # "more data", length unknown (256)
        if raw[4] != 0x08:
            return b"\x6c\x08"
        return b"12345678\x90\x00"

    card = ScriptedCard(answer)
    assert client_for(card).send(CommandApdu(0, 0xA4, 4, 0, b"\x01"), "SELECT") == b"12345678"
    assert card.seen[-1].hex() == "00c0000008"


def test_a_card_that_always_has_more_data_is_refused() -> None:
    card = ScriptedCard(lambda raw: b"\x00" * 0xF0 + b"\x61\xf0")
    with pytest.raises(BadData, match="more than"):
        client_for(card).send(CommandApdu(0, 0xA4, 4, 0, b"\x01"), "SELECT")
    assert len(card.seen) < 400


def test_a_card_that_keeps_asking_for_another_le_is_refused() -> None:
    card = ScriptedCard(lambda raw: b"\x6c\x10" if raw[1] == 0xB0 else b"\x61\x10"
                        if raw[1] == 0xA4 else b"\x6c\x05")
    client = client_for(card)
    with pytest.raises(BadData):
        client.send(CommandApdu(0, 0xB0, 0, 0, le=4), "READ BINARY")
    with pytest.raises(BadData):
        client.send(CommandApdu(0, 0xA4, 4, 0, b"\x01"), "SELECT")
    assert len(card.seen) < 10
