"""The one place that follows a card's T=0 answers (ISO/IEC 7816-3 §12.2, 7816-4 §5.3.4):
61xx "xx more bytes" is fetched with GET RESPONSE, 6Cxx "wrong Le, use xx" is answered by
repeating the command once with that Le. Both the card client and the PSAM authenticator use
it, so neither sees 61xx or 6Cxx. A card that contradicts itself or never stops announcing
data gets a clear error instead of a client that loops."""

from __future__ import annotations

from collections.abc import Callable

from sscard.card.apdu import CommandApdu, ResponseApdu
from sscard.card.errors import BadData

#: no answer of CARD_SPEC (or a PSAM) is longer; 61xx chains past this are refused
MAX_RESPONSE = 4096

Exchange = Callable[[CommandApdu], ResponseApdu]


def _with_le(exchange: Exchange, apdu: CommandApdu, what: str) -> ResponseApdu:
    response = exchange(apdu)
    if response.sw1 == 0x6C:
        response = exchange(CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data,
                                        le=response.sw2 or 256))
        if response.sw1 == 0x6C:
            raise BadData(response.sw, what, "the card asked for another Le twice")
    return response


def transceive(exchange: Exchange, apdu: CommandApdu, what: str) -> tuple[int, bytes]:
    """Send ``apdu`` through ``exchange`` and follow 6Cxx and 61xx; the final status word and
    all the response data."""
    response = _with_le(exchange, apdu, what)
    data = response.data
    while response.sw1 == 0x61:
        if len(data) > MAX_RESPONSE:
            raise BadData(response.sw, what, f"the card announced more than {MAX_RESPONSE} "
                          "bytes of response data")
        response = _with_le(exchange, CommandApdu(0x00, 0xC0, 0, 0, le=response.sw2 or 256),
                            f"{what} (GET RESPONSE)")
        data += response.data
    return response.sw, data
