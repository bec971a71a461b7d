"""The MOHRSS terminal API's output formats (CARD_SPEC §5)."""

from __future__ import annotations

from sscard.card.client import CardInfo

#: MOHRSS error codes for the failures the CLI reports (CARD_SPEC §5)
NO_CARD, READER_CONNECT, WRONG_PIN, PIN_BLOCKED, NO_PSAM = -2, -11, -51, -52, -2201


def ireadcardbas(info: CardInfo, terminal_number: str = "000000000000",
                 device_number: str = "") -> str:
    """iReadCardBas: eleven fields, each followed by ``|``."""
    card, holder = info.card, info.holder
    card_id = card.card_id.hex().upper()
    fields = [
        card_id[:6], holder.ssn, card.card_number, card_id, holder.name,
        info.historical_bytes.hex().upper(), card.spec_version, card.issue_date,
        card.expiry_date, terminal_number, device_number,
    ]
    return "".join(f"{f}|" for f in fields)


def status_code(sw: int) -> int:
    """A card status word as the API returns it: its negative decimal value."""
    return -sw
