"""Card errors: reader-side (no reader, no card, card pulled) and status words turned into
precise exceptions with the hex status word and its meaning in the message."""

from __future__ import annotations

from sscard.card.apdu import describe_sw


class CardError(Exception):
    """Any failure talking to a card."""


class ReaderError(CardError):
    """The PC/SC layer failed (service down, reader vanished, protocol error)."""


class NoReader(ReaderError):
    """No card reader (or not the one named) is attached."""


class NoCard(ReaderError):
    """The reader holds no card."""


class CardRemoved(ReaderError):
    """The card was pulled (or the emulator stopped) in the middle of an operation."""


class CardIntegrityError(CardError):
    """Refused: the operation would act on the wrong card or leave the card inconsistent."""


class CardMismatch(CardIntegrityError):
    """The card is not the one the operation is for: issued to someone else, or holding (or
    about to be given) a certificate for a key that is not its own."""


class CertifiedKey(CardIntegrityError):
    """The operation would replace a key that a certificate (or an issuance under way)
    names; it needs an explicit, recorded --force."""


class CardStatusError(CardError):
    """The card answered with a status word other than success."""

    def __init__(self, sw: int, command: str = "", detail: str = "") -> None:
        self.sw = sw
        self.command = command
        self.meaning = describe_sw(sw)
        where = f"{command}: " if command else ""
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{where}card answered {sw:04X}: {self.meaning}{extra}")


class WrongPin(CardStatusError):
    def __init__(self, sw: int, command: str = "") -> None:
        self.tries_left = sw & 0x0F
        super().__init__(sw, command)
        self.args = (f"wrong PIN: {self.tries_left} "
                     f"{'try' if self.tries_left == 1 else 'tries'} left (status {sw:04X})",)


class AuthenticationFailed(CardStatusError):
    """A cryptogram (external authentication, key verification) was wrong: 63Cx outside PIN
    commands; ``tries_left`` as for PINs."""

    def __init__(self, sw: int, command: str = "") -> None:
        self.tries_left = sw & 0x0F
        super().__init__(sw, command, f"{self.tries_left} tries left")


class PinBlocked(CardStatusError):
    """6983, or 63C0: a wrong PIN that used the last try (the card says "0 tries left"; the
    holder needs to hear "blocked")."""

    def __init__(self, sw: int, command: str = "") -> None:
        super().__init__(sw, command)
        first = "wrong PIN: that was the last try, the PIN is now blocked" \
            if sw == 0x63C0 else "PIN blocked"
        self.args = (f"{first} (status {sw:04X}): unblock it at a service counter "
                     "(sscard card pin unblock)",)


class KeyBlocked(CardStatusError):
    """6983 after an authentication key ran out of tries."""


class SecurityStatusNotSatisfied(CardStatusError):
    pass


class ConditionsNotSatisfied(CardStatusError):
    pass


class FileNotFound(CardStatusError):
    pass


class RecordNotFound(CardStatusError):
    pass


class WrongLength(CardStatusError):
    pass


class BadData(CardStatusError):
    pass


class KeyNotFound(CardStatusError):
    pass


class BadMac(CardStatusError):
    pass


class NotSupported(CardStatusError):
    pass


class ApplicationBlocked(CardStatusError):
    pass


class MemoryFailure(CardStatusError):
    pass


class UnknownStatus(CardStatusError):
    pass


_BY_SW: dict[int, type[CardStatusError]] = {
    0x6982: SecurityStatusNotSatisfied,
    0x6985: ConditionsNotSatisfied,
    0x6986: ConditionsNotSatisfied,
    0x6A82: FileNotFound,
    0x6A83: RecordNotFound,
    0x6700: WrongLength,
    0x6A80: BadData,
    0x6984: BadData,
    0x6981: BadData,
    0x6988: BadMac,
    0x9302: BadMac,
    0x6A88: KeyNotFound,
    0x6A81: NotSupported,
    0x6D00: NotSupported,
    0x6E00: NotSupported,
    0x6A86: BadData,
    0x6B00: BadData,
    0x9303: ApplicationBlocked,
    0x6581: MemoryFailure,
}


def error_for_status(sw: int, command: str = "", pin_command: bool = False) -> CardStatusError:
    """The exception for a non-success status word. ``pin_command`` says whether 63Cx/6983 refer
    to the PIN (VERIFY, CHANGE PIN) or to a key (EXTERNAL AUTHENTICATE)."""
    if sw == 0x63C0 and pin_command:
        return PinBlocked(sw, command)
    if sw >> 4 == 0x63C:
        return WrongPin(sw, command) if pin_command else AuthenticationFailed(sw, command)
    if sw == 0x6983:
        return PinBlocked(sw, command) if pin_command else KeyBlocked(sw, command)
    return _BY_SW.get(sw, UnknownStatus)(sw, command)
