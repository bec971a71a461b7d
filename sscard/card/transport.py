"""Transports carry APDU bytes to a card: in-process (straight into an emulator object) or
PC/SC through pyscard's ``smartcard.scard`` layer, whose result codes map onto precise
reader errors (no reader, no card, card removed)."""

from __future__ import annotations

import abc
import os
from typing import Any, Protocol

from sscard.card.errors import CardRemoved, NoCard, NoReader, ReaderError


class Transport(abc.ABC):
    """One connection to one card."""

    name: str = ""

    @abc.abstractmethod
    def connect(self) -> bytes:
        """Power the card up and return its ATR."""

    @abc.abstractmethod
    def transmit(self, apdu: bytes) -> bytes:
        """Send a C-APDU, return the R-APDU (data || SW1 SW2)."""

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    @property
    @abc.abstractmethod
    def atr(self) -> bytes: ...

    def __enter__(self) -> Transport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


class _Device(Protocol):
    def power_on(self) -> bytes: ...

    def power_off(self) -> None: ...

    def process(self, raw: bytes) -> bytes: ...


class InProcessTransport(Transport):
    """Straight to an emulated card or PSAM object in this process."""

    def __init__(self, device: _Device, name: str = "in-process") -> None:
        self.device = device
        self.name = name
        self._atr: bytes | None = None

    def connect(self) -> bytes:
        self._atr = self.device.power_on()
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        if self._atr is None:
            raise CardRemoved("in-process card is not connected")
        return self.device.process(apdu)

    def disconnect(self) -> None:
        if self._atr is not None:
            self.device.power_off()
        self._atr = None

    @property
    def atr(self) -> bytes:
        if self._atr is None:
            raise CardRemoved("in-process card is not connected")
        return self._atr


# --- PC/SC --------------------------------------------------------------------------------------


def _scard() -> Any:
    from smartcard import scard

    return scard


def _message(code: int) -> str:
    try:
        return str(_scard().SCardGetErrorMessage(code)).strip()
    except Exception:  # pragma: no cover - message lookup is best effort
        return f"PC/SC error {code & 0xFFFFFFFF:#010x}"


def _raise_for(code: int, reader: str, during: str) -> None:
    s = _scard()
    if code == s.SCARD_S_SUCCESS:
        return
    if code in (s.SCARD_E_NO_SERVICE, s.SCARD_E_SERVICE_STOPPED):
        raise NoReader(f"the PC/SC service (pcscd) is not running ({_message(code)})")
    if code in (s.SCARD_E_NO_READERS_AVAILABLE, s.SCARD_E_UNKNOWN_READER,
                s.SCARD_E_READER_UNAVAILABLE):
        what = f"reader {reader!r} not found" if reader else "no card reader attached"
        raise NoReader(f"{what} ({_message(code)})")
    if during == "connect" and code in (s.SCARD_E_NO_SMARTCARD, s.SCARD_W_REMOVED_CARD,
                                        s.SCARD_W_UNRESPONSIVE_CARD,
                                        s.SCARD_W_UNPOWERED_CARD):
        raise NoCard(f"no card in reader {reader!r} ({_message(code)})")
    if code in (s.SCARD_W_REMOVED_CARD, s.SCARD_E_NO_SMARTCARD, s.SCARD_W_RESET_CARD,
                s.SCARD_W_UNPOWERED_CARD, s.SCARD_W_UNRESPONSIVE_CARD,
                s.SCARD_E_INVALID_HANDLE, s.SCARD_F_COMM_ERROR, s.SCARD_E_NOT_TRANSACTED):
        raise CardRemoved(
            f"the card in {reader!r} was removed or stopped answering during {during} "
            f"({_message(code)}); put it back and repeat the operation"
        )
    raise ReaderError(f"PC/SC {during} on {reader!r} failed: {_message(code)}")


class PcscContext:
    """A PC/SC resource-manager context (released on close)."""

    def __init__(self) -> None:
        s = _scard()
        code, self.handle = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        _raise_for(code, "", "establishing a PC/SC context")

    def readers(self) -> list[str]:
        s = _scard()
        code, names = s.SCardListReaders(self.handle, [])
        if code == s.SCARD_E_NO_READERS_AVAILABLE:
            return []
        _raise_for(code, "", "listing readers")
        return list(names)

    def card_present(self, reader: str) -> bool:
        s = _scard()
        code, states = s.SCardGetStatusChange(self.handle, 0,
                                              [(reader, s.SCARD_STATE_UNAWARE)])
        if code != s.SCARD_S_SUCCESS:
            return False
        return bool(states[0][1] & s.SCARD_STATE_PRESENT)

    def close(self) -> None:
        _scard().SCardReleaseContext(self.handle)

    def __enter__(self) -> PcscContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcscTransport(Transport):
    """A card in a PC/SC reader, by reader name."""

    def __init__(self, reader: str, exclusive: bool = False) -> None:
        self.name = reader
        #: no other program may talk to the card while connected (a PIN-verified session)
        self.exclusive = exclusive
        self._context: PcscContext | None = None
        self._card: Any = None
        self._protocol: int = 0
        self._atr: bytes | None = None

    def connect(self) -> bytes:
        s = _scard()
        self._context = PcscContext()
        if self.name not in self._context.readers():
            self._context.close()
            self._context = None
            raise NoReader(f"reader {self.name!r} not found")
        code, card, protocol = s.SCardConnect(
            self._context.handle, self.name,
            s.SCARD_SHARE_EXCLUSIVE if self.exclusive else s.SCARD_SHARE_SHARED,
            s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1,
        )
        if code != s.SCARD_S_SUCCESS:
            self._context.close()
            self._context = None
            _raise_for(code, self.name, "connect")
        self._card, self._protocol = card, protocol
        code, _name, _state, _proto, atr = s.SCardStatus(card)
        _raise_for(code, self.name, "reading the ATR")
        self._atr = bytes(atr)
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        if self._card is None:
            raise CardRemoved(f"not connected to a card in {self.name!r}")
        s = _scard()
        code, response = s.SCardTransmit(self._card, self._protocol, list(apdu))
        if code != s.SCARD_S_SUCCESS:
            _raise_for(code, self.name, "a command")
        if len(response) < 2:
            # vpcd (and some readers) report a vanished card as an empty answer
            raise CardRemoved(
                f"the card in {self.name!r} stopped answering during a command (no status "
                "word); put it back and repeat the operation"
            )
        return bytes(response)

    def disconnect(self, reset: bool = False) -> None:
        """``reset``: reset the card on the way out, so that a PIN verified in this session
        does not stay verified for the next program that connects."""
        s = _scard()
        if self._card is not None:
            s.SCardDisconnect(self._card, s.SCARD_RESET_CARD if reset else s.SCARD_LEAVE_CARD)
            self._card = None
        if self._context is not None:
            self._context.close()
            self._context = None
        self._atr = None

    @property
    def atr(self) -> bytes:
        if self._atr is None:
            raise CardRemoved(f"not connected to a card in {self.name!r}")
        return self._atr


def list_readers() -> list[str]:
    with PcscContext() as ctx:
        return ctx.readers()


def readers_with_cards() -> list[str]:
    with PcscContext() as ctx:
        return [r for r in ctx.readers() if ctx.card_present(r)]


def default_reader_names() -> tuple[str | None, str | None]:
    """Card and PSAM reader names from $SSCARD_READER / $SSCARD_PSAM_READER."""
    return os.environ.get("SSCARD_READER") or None, os.environ.get("SSCARD_PSAM_READER") or None
