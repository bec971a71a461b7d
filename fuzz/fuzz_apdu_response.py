"""Fuzz what a card (or something pretending to be one) answers: the card client runs its
read operations over a transport whose every R-APDU comes from the fuzzer.

Allowed: CardError (status words, bad data, the card 'pulled' when the input runs out),
CodecError/CardDataError/ApduFormatError (bytes that do not fit the card's encodings)."""

from __future__ import annotations

import _common
import atheris

with _common.instrumented():
    from sscard.card.apdu import ApduFormatError
    from sscard.card.client import CardClient
    from sscard.card.codec import CodecError
    from sscard.card.errors import CardError, CardRemoved
    from sscard.card.transport import Transport
    from sscard.card.validation import CardDataError

ALLOWED = (CardError, CodecError, CardDataError, ApduFormatError)
MAX_EXCHANGES = 64


class ScriptedTransport(Transport):
    """Answers each C-APDU with the next length-prefixed chunk of the fuzz input."""

    name = "fuzz"

    def __init__(self, data: bytes) -> None:
        self._fdp = atheris.FuzzedDataProvider(data)
        self._count = 0

    def connect(self) -> bytes:
        return self.atr

    def transmit(self, apdu: bytes) -> bytes:
        self._count += 1
        if self._count > MAX_EXCHANGES or self._fdp.remaining_bytes() == 0:
            raise CardRemoved("fuzz input exhausted")
        return self._fdp.ConsumeBytes(self._fdp.ConsumeIntInRange(0, 300))

    def disconnect(self) -> None:
        return None

    @property
    def atr(self) -> bytes:
        return bytes.fromhex("3B6C00000000000000000000000000")


OPERATIONS = ("read_info", "get_challenge", "public_point", "pin_tries_left", "sign_digest",
              "read_certificate", "identity", "select_ssse")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    op = OPERATIONS[data[0] % len(OPERATIONS)]
    client = CardClient(ScriptedTransport(data[1:]))
    try:
        if op == "sign_digest":
            client.sign_digest(b"\x11" * 32)
        elif op == "read_certificate":
            client.read_certificate("sign")
        else:
            getattr(client, op)()
    except ALLOWED:
        pass


def seeds() -> list[bytes]:
    out = []
    for i, _op in enumerate(OPERATIONS):
        out.append(bytes([i]) + bytes([2]) + bytes.fromhex("9000") * 40)
        out.append(bytes([i]) + bytes([4, 0, 0, 0]) + bytes.fromhex("01029000") * 30)
        out.append(bytes([i]) + bytes([2]) + bytes.fromhex("6110") + bytes([18])
                   + bytes(16) + bytes.fromhex("9000"))
    return out


if __name__ == "__main__":
    _common.main(test_one_input, seeds)
