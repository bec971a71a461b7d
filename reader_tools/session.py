"""Opening the card (and the PSAM) for a command, and turning card errors into the clear
messages and exit codes that card-issuing staff see."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import click

from sscard.card import errors
from sscard.card.auth import NoPsam, PsamAuthenticator
from sscard.card.client import CardClient
from sscard.card.codec import CodecError
from sscard.card.transport import PcscContext, PcscTransport
from sscard.card.validation import CardDataError
from sscard.exitcodes import Exit

# the card's cases in the one exit-code table (sscard.exitcodes, docs/cli.md)
EXIT_NO_READER, EXIT_NO_CARD, EXIT_REMOVED = Exit.NO_READER, Exit.NO_CARD, Exit.CARD_REMOVED
EXIT_WRONG_PIN, EXIT_BLOCKED = Exit.WRONG_PIN, Exit.PIN_BLOCKED
EXIT_CARD_STATUS, EXIT_NO_PSAM, EXIT_CARD_ERROR = Exit.CARD_STATUS, Exit.NO_PSAM, Exit.CARD_ERROR
EXIT_CARD_MISMATCH = Exit.CARD_MISMATCH


class CardCommandError(click.ClickException):
    """A ClickException whose exit code says what went wrong (see the EXIT_* constants)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        # click declares exit_code on the class; each instance carries its own
        setattr(self, "exit_code", code)  # noqa: B010


def describe(exc: Exception) -> tuple[str, int]:
    """The message and exit code for a failure."""
    if isinstance(exc, errors.NoReader):
        return f"no card reader: {exc}", EXIT_NO_READER
    if isinstance(exc, errors.NoCard):
        return f"no card: {exc}", EXIT_NO_CARD
    if isinstance(exc, errors.CardRemoved):
        return f"card removed: {exc}", EXIT_REMOVED
    if isinstance(exc, errors.WrongPin):
        return str(exc), EXIT_WRONG_PIN
    if isinstance(exc, errors.PinBlocked):
        return str(exc), EXIT_BLOCKED
    if isinstance(exc, NoPsam):
        return f"no PSAM: {exc}", EXIT_NO_PSAM
    if isinstance(exc, errors.CardMismatch):
        return f"wrong card: {exc}", EXIT_CARD_MISMATCH
    if isinstance(exc, errors.CardIntegrityError):
        return str(exc), EXIT_CARD_MISMATCH
    if isinstance(exc, errors.CardStatusError):
        return str(exc), EXIT_CARD_STATUS
    if isinstance(exc, (CardDataError, CodecError)):
        return f"invalid card data: {exc}", 2
    return f"card error: {exc}", EXIT_CARD_ERROR


@contextlib.contextmanager
def card_errors() -> Iterator[None]:
    try:
        yield
    except (errors.CardError, CardDataError, CodecError) as exc:
        message, code = describe(exc)
        raise CardCommandError(message, code) from None


def _answers_ssse(reader: str) -> bool:
    transport = PcscTransport(reader)
    try:
        client = CardClient(transport)
        client.connect()
        client.select_ssse()
        return True
    except errors.CardError:
        return False
    finally:
        transport.disconnect()


def _answers_psam(reader: str) -> bool:
    transport = PcscTransport(reader)
    try:
        transport.connect()
        PsamAuthenticator(transport).terminal_number()
        return True
    except errors.CardError:
        return False
    finally:
        transport.disconnect()


def find_card_reader(name: str | None) -> str:
    name = name or os.environ.get("SSCARD_READER") or None
    with PcscContext() as ctx:
        readers = ctx.readers()
        if not readers:
            raise errors.NoReader("no card reader attached (is pcscd running and the reader "
                                  "plugged in?)")
        if name is not None:
            if name not in readers:
                raise errors.NoReader(f"reader {name!r} not found; readers: {', '.join(readers)}")
            if not ctx.card_present(name):
                raise errors.NoCard(f"reader {name!r} holds no card")
            return name
        present = [r for r in readers if ctx.card_present(r)]
    if not present:
        raise errors.NoCard(f"no card in any reader ({', '.join(readers)}); insert the card")
    for reader in present:
        if _answers_ssse(reader):
            return reader
    raise errors.NoCard(f"no social security card among the cards in {', '.join(present)}")


def find_psam_reader(name: str | None, card_reader: str) -> str:
    name = name or os.environ.get("SSCARD_PSAM_READER") or None
    if name is not None:
        return name
    with PcscContext() as ctx:
        present = [r for r in ctx.readers() if r != card_reader and ctx.card_present(r)]
    for reader in present:
        if _answers_psam(reader):
            return reader
    raise NoPsam("no PSAM found in any reader (MOHRSS -2201); insert the PSAM or name its "
                 "reader with --psam-reader")


@dataclass
class Opened:
    client: CardClient
    psam: PsamAuthenticator | None

    def need_psam(self) -> PsamAuthenticator:
        if self.psam is None:
            raise NoPsam("this operation needs a PSAM")
        return self.psam


@contextlib.contextmanager
def open_card(reader: str | None, psam_reader: str | None = None,
              with_psam: bool = False, optional_psam: bool = False) -> Iterator[Opened]:
    """Connect to the card (and the PSAM when asked, or when ``optional_psam`` and one is
    there); disconnect both at the end."""
    card_reader = find_card_reader(reader)
    client = CardClient(PcscTransport(card_reader))
    psam_transport: PcscTransport | None = None
    try:
        client.connect()
        psam = None
        if with_psam or optional_psam:
            try:
                psam_transport = PcscTransport(find_psam_reader(psam_reader, card_reader))
                psam_transport.connect()
                psam = PsamAuthenticator(psam_transport)
            except errors.CardError:
                if with_psam:
                    raise
                psam_transport = None
        yield Opened(client, psam)
    finally:
        with contextlib.suppress(errors.CardError):
            client.close()
        if psam_transport is not None:
            with contextlib.suppress(errors.CardError):
                psam_transport.disconnect()
