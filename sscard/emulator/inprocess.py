"""An emulated card in an in-process reader, with an emulated PSAM beside it: the embedded
deployment's "card in the reader", for the demo, the all-in-one system and tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sscard.card.auth import PsamAuthenticator
from sscard.card.client import CardClient
from sscard.card.transport import InProcessTransport
from sscard.emulator.card import CardState, EmulatedCard
from sscard.emulator.psam import EmulatedPsam, make_test_psam


@contextmanager
def card_in_reader(
    state_path: Path, region_code: str = "639900"
) -> Iterator[tuple[CardClient, PsamAuthenticator]]:
    """The card whose state is in ``state_path``, loaded afresh (as after re-insertion), and a
    PSAM with ``region_code``'s test keys; both disconnected on exit."""
    card = EmulatedCard(CardState.load(state_path), state_path)
    psam = InProcessTransport(EmulatedPsam(make_test_psam(region_code)), "emulated PSAM")
    psam.connect()
    client = CardClient(InProcessTransport(card, "emulated card"))
    client.connect()
    try:
        yield client, PsamAuthenticator(psam)
    finally:
        client.close()
        psam.disconnect()
