"""Terminal-side authentication: who computes the cryptograms a card asks for.

Two authenticators, one interface: :class:`PsamAuthenticator` asks a PSAM in a second reader
(CARD_SPEC §3: ``BF DE`` diversify, then ``80 FA`` encrypt); :class:`KeyServiceAuthenticator`
computes with provincial keys handed over by a key service (the KMC), as the MOHRSS
``*_HSM_Step1/Step2`` functions do."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass

from sscard.card import codec
from sscard.card import diversify as div
from sscard.card.apdu import CommandApdu, ResponseApdu
from sscard.card.diversify import CardAlgorithm
from sscard.card.errors import CardError, error_for_status
from sscard.card.t0 import transceive
from sscard.card.transport import Transport

PSAM_DES_NAME = b"sx1.sh." + "社会保障".encode("gbk")
PSAM_SM4_NAME = b"sx3.sh." + "社会保障".encode("gbk")
PSAM_DF01_AID = bytes.fromhex("D15600000590")


class NoPsam(CardError):
    """No PSAM answered (MOHRSS error -2201)."""


@dataclass(frozen=True)
class CardIdentity:
    """What diversification needs to know about a card."""

    atr: bytes
    region_code: str
    algorithm: CardAlgorithm

    @property
    def card_factor(self) -> bytes:
        return div.card_factor(self.atr)

    @property
    def city_factor(self) -> bytes:
        return div.city_factor(self.region_code)


class Authenticator(abc.ABC):
    @abc.abstractmethod
    def external_cryptogram(self, key_id: int, card: CardIdentity, challenge: bytes) -> bytes:
        """The 8 bytes for ``EXTERNAL AUTHENTICATE`` after ``challenge``."""

    @abc.abstractmethod
    def internal_expected(self, card: CardIdentity, process_factor: bytes, data: bytes) -> bytes:
        """The 8 bytes a genuine card answers to ``INTERNAL AUTHENTICATE``."""

    @abc.abstractmethod
    def pin_command_data(self, key_id: int, card: CardIdentity, challenge: bytes,
                         header: bytes, pin: str) -> bytes:
        """Encrypted PIN block || 4-byte MAC for the secure-messaging ``84 24`` command.
        ``header`` is CLA INS P1 P2 of that command."""

    def terminal_number(self) -> str:
        return "000000000000"

    def device_number(self) -> str:
        return ""


def _sm_lc(card: CardIdentity, pin: str) -> int:
    return len(div.pin_block(pin, card.algorithm)) + 4


class KeyServiceAuthenticator(Authenticator):
    """Cryptograms from provincial-level keys (key id -> 16-byte key) that a key service holds.
    In production the keys stay in the KMC's HSM and it runs exactly these functions."""

    def __init__(self, provincial_keys: Mapping[int, bytes]) -> None:
        self._keys = dict(provincial_keys)

    def _card_key(self, key_id: int, card: CardIdentity) -> bytes:
        try:
            master = self._keys[key_id]
        except KeyError:
            raise CardError(f"key service holds no key {key_id:02X}") from None
        return div.card_key(master, card.region_code, card.atr, card.algorithm)

    def external_cryptogram(self, key_id: int, card: CardIdentity, challenge: bytes) -> bytes:
        return div.external_auth_cryptogram(self._card_key(key_id, card), challenge,
                                            card.algorithm)

    def internal_expected(self, card: CardIdentity, process_factor: bytes, data: bytes) -> bytes:
        return div.internal_auth_answer(self._card_key(0x09, card), process_factor, data,
                                        card.algorithm)

    def pin_command_data(self, key_id: int, card: CardIdentity, challenge: bytes,
                         header: bytes, pin: str) -> bytes:
        key = self._card_key(key_id, card)
        encrypted = div.ecb_encrypt(key, div.pin_block(pin, card.algorithm), card.algorithm)
        lc = bytes([_sm_lc(card, pin)])
        return encrypted + div.mac(key, challenge, header + lc + encrypted, card.algorithm)


class PsamAuthenticator(Authenticator):
    """A PSAM reached through its own transport (the second reader slot)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._env: CardAlgorithm | None = None
        self.apdu_count = 0

    def _exchange(self, apdu: CommandApdu) -> ResponseApdu:
        self.apdu_count += 1
        return ResponseApdu.parse(self.transport.transmit(apdu.encode()))

    def _send(self, apdu: CommandApdu, what: str) -> bytes:
        sw, data = transceive(self._exchange, apdu, f"PSAM {what}")
        if sw != 0x9000:
            raise error_for_status(sw, f"PSAM {what}")
        return data

    def _enter(self, algorithm: CardAlgorithm) -> None:
        if self._env is algorithm:
            return
        name = PSAM_SM4_NAME if algorithm is CardAlgorithm.SM4 else PSAM_DES_NAME
        try:
            self._send(CommandApdu(0x00, 0xA4, 0x04, 0x00, name), "select environment")
            self._send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PSAM_DF01_AID), "select DF01")
        except CardError as exc:
            raise NoPsam(f"the PSAM in {self.transport.name!r} has no "
                         f"{algorithm.name} environment: {exc}") from None
        self._env = algorithm

    def _derive(self, key_id: int, card: CardIdentity, process_factor: bytes = b"") -> None:
        self._enter(card.algorithm)
        self._send(CommandApdu(0xBF, 0xDE, key_id, 0x00,
                               card.card_factor + card.city_factor + process_factor),
                   f"diversify key {key_id:02X}")

    def _encrypt(self, data: bytes) -> bytes:
        return self._send(CommandApdu(0x80, 0xFA, 0x00, 0x00, data), "encrypt")

    def _answer(self, card: CardIdentity, challenge: bytes) -> bytes:
        if card.algorithm is CardAlgorithm.DES3:
            return self._encrypt(challenge)
        e = self._encrypt(challenge.ljust(16, b"\x00"))
        return bytes(a ^ b for a, b in zip(e[:8], e[8:16], strict=True))

    def external_cryptogram(self, key_id: int, card: CardIdentity, challenge: bytes) -> bytes:
        self._derive(key_id, card)
        return self._answer(card, challenge)

    def internal_expected(self, card: CardIdentity, process_factor: bytes, data: bytes) -> bytes:
        self._derive(0x09, card, process_factor)
        return self._answer(card, data)

    def pin_command_data(self, key_id: int, card: CardIdentity, challenge: bytes,
                         header: bytes, pin: str) -> bytes:
        self._derive(key_id, card)
        encrypted = self._encrypt(div.pin_block(pin, card.algorithm))
        iv = challenge.ljust(card.algorithm.block_size, b"\x00")
        lc = bytes([_sm_lc(card, pin)])
        mac = self._send(CommandApdu(0x80, 0xFA, 0x05, 0x00, iv + header + lc + encrypted),
                         "MAC")
        return encrypted + mac

    def terminal_number(self) -> str:
        self._enter(self._env or CardAlgorithm.SM4)
        return codec.bcd_decode(self._send(CommandApdu(0x00, 0xB0, 0x96, 0x00, le=6),
                                           "read terminal number"))

    def device_number(self) -> str:
        self._enter(self._env or CardAlgorithm.SM4)
        return codec.bcd_decode(self._send(CommandApdu(0x00, 0xB0, 0x95, 0x00, le=10),
                                           "read device number"))
