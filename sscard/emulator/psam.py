"""The emulated PSAM (terminal security module): holds provincial-level keys, diversifies them
for a card (``BF DE``) and encrypts or MACs with the result (``80 FA``), as CARD_SPEC §3's
terminal-side flow describes. Also answers its terminal and device numbers."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sscard.card import codec
from sscard.card import diversify as div
from sscard.card.apdu import ApduFormatError, CommandApdu
from sscard.card.diversify import CardAlgorithm
from sscard.emulator.card import SW, CardStatus
from sscard.emulator.state import read_checked, write_atomic
from sscard.emulator.testkeys import KeyId, provincial_test_key

PSAM_FORMAT = "sscard-emulated-psam/1"

#: PSAM environments by algorithm (CARD_SPEC §1)
PSAM_DES_NAME = b"sx1.sh." + "社会保障".encode("gbk")
PSAM_SM4_NAME = b"sx3.sh." + "社会保障".encode("gbk")
PSAM_DF01_AID = bytes.fromhex("D15600000590")
ENVIRONMENTS = {PSAM_DES_NAME: CardAlgorithm.DES3, PSAM_SM4_NAME: CardAlgorithm.SM4}

#: ``3B 6C 00 00`` (TB1, TC1 and 12 historical bytes) + 4 fixed historical bytes; 8 random
#: ones complete the 12 that T0 announces
PSAM_ATR_PREFIX = bytes.fromhex("3B6C00000A0B0C0D")

TERMINAL_NUMBER_SFI = 0x16  # 6 bytes BCD [P]
DEVICE_NUMBER_SFI = 0x15  # 10 bytes BCD [P]


@dataclass
class PsamState:
    atr: bytes
    terminal_number: str  # 12 digits
    device_number: str  # 20 digits
    keys: dict[str, dict[int, bytes]]  # algorithm name -> key id -> provincial key

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PSAM_FORMAT,
            "atr": self.atr.hex().upper(),
            "terminal_number": self.terminal_number,
            "device_number": self.device_number,
            "keys": {alg: {f"{k:02X}": v.hex().upper() for k, v in keys.items()}
                     for alg, keys in self.keys.items()},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PsamState:
        atr = bytes.fromhex(doc["atr"])
        if atr.startswith(PSAM_ATR_PREFIX) and len(atr) == 12:
            # state files made before the fix carry 8 of the 12 historical bytes announced
            atr += secrets.token_bytes(4)
        return cls(
            atr=atr,
            terminal_number=doc["terminal_number"],
            device_number=doc["device_number"],
            keys={alg: {int(k, 16): bytes.fromhex(v) for k, v in keys.items()}
                  for alg, keys in doc["keys"].items()},
        )

    def save(self, path: Path) -> None:
        write_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> PsamState:
        return cls.from_json(read_checked(path, PSAM_FORMAT))


def make_test_psam(region_code: str = "639900") -> PsamState:
    """A PSAM loaded with the test provincial keys of ``region_code``'s province."""
    return PsamState(
        atr=PSAM_ATR_PREFIX + secrets.token_bytes(8),
        terminal_number=region_code + f"{secrets.randbelow(10**6):06d}",
        device_number=f"{secrets.randbelow(10**20):020d}",
        keys={alg.name: {int(k): provincial_test_key(k, region_code, alg) for k in KeyId}
              for alg in CardAlgorithm},
    )


@dataclass
class _Session:
    algorithm: CardAlgorithm | None = None
    in_df01: bool = False
    derived: bytes | None = None
    pending: bytes = b""  # response data awaiting GET RESPONSE
    extra: dict[str, bytes] = field(default_factory=dict)


class EmulatedPsam:
    def __init__(self, state: PsamState) -> None:
        self.state = state
        self.session = _Session()
        self._lock = threading.Lock()

    @property
    def atr(self) -> bytes:
        return self.state.atr

    def power_on(self) -> bytes:
        self.session = _Session()
        return self.state.atr

    def reset(self) -> bytes:
        return self.power_on()

    def power_off(self) -> None:
        self.session = _Session()

    def process(self, raw: bytes) -> bytes:
        with self._lock:
            try:
                apdu = CommandApdu.parse(raw)
            except ApduFormatError:
                return SW.WRONG_LENGTH.to_bytes(2, "big")
            pending, self.session.pending = self.session.pending, b""
            if (apdu.cla, apdu.ins) == (0x00, 0xC0):
                return self._get_response(apdu, pending)
            try:
                data = self._dispatch(apdu)
            except CardStatus as status:
                return status.sw.to_bytes(2, "big")
            if data and apdu.le is None:
                # T=0, as the card: a case-3 command's data comes by GET RESPONSE after 61xx
                self.session.pending = data
                return (0x6100 | (len(data) & 0xFF)).to_bytes(2, "big")
            return data + b"\x90\x00"

    def _get_response(self, apdu: CommandApdu, pending: bytes) -> bytes:
        if not pending:
            return SW.CONDITIONS.to_bytes(2, "big")
        if apdu.le not in (None, 256, len(pending)):
            self.session.pending = pending  # the right Le may follow
            return (0x6C00 | (len(pending) & 0xFF)).to_bytes(2, "big")
        return pending + b"\x90\x00"

    def _dispatch(self, apdu: CommandApdu) -> bytes:
        s = self.session
        if (apdu.cla, apdu.ins) == (0x00, 0xA4):
            if apdu.p1 != 0x04:
                raise CardStatus(SW.BAD_P1P2)
            if apdu.data in ENVIRONMENTS:
                self.session = _Session(algorithm=ENVIRONMENTS[apdu.data])
                return b""
            if apdu.data == PSAM_DF01_AID and s.algorithm is not None:
                s.in_df01 = True
                return b""
            raise CardStatus(SW.FILE_NOT_FOUND)
        if (apdu.cla, apdu.ins) == (0x00, 0xB0):
            sfi = apdu.p1 & 0x1F
            if not apdu.p1 & 0x80:
                raise CardStatus(SW.NO_CURRENT_EF)
            if sfi == TERMINAL_NUMBER_SFI:
                return codec.bcd_encode(self.state.terminal_number, 6)
            if sfi == DEVICE_NUMBER_SFI:
                return codec.bcd_encode(self.state.device_number, 10)
            raise CardStatus(SW.FILE_NOT_FOUND)
        if (apdu.cla, apdu.ins) == (0xBF, 0xDE):
            return self._derive(apdu)
        if (apdu.cla, apdu.ins) == (0x80, 0xFA):
            return self._cipher(apdu)
        raise CardStatus(SW.INS_NOT_SUPPORTED)

    def _derive(self, apdu: CommandApdu) -> bytes:
        """``BF DE <key id> 00 Lc <card factor> <city factor> [<process factor>]``: derive the
        card's key (and optionally a process key) into the session [P layout]."""
        s = self.session
        if s.algorithm is None or not s.in_df01:
            raise CardStatus(SW.CONDITIONS)
        keys = self.state.keys.get(s.algorithm.name, {})
        if apdu.p1 not in keys:
            raise CardStatus(SW.KEY_NOT_FOUND)
        if len(apdu.data) not in (16, 24):
            raise CardStatus(SW.WRONG_LENGTH)
        card_f, city_f, process_f = apdu.data[:8], apdu.data[8:16], apdu.data[16:]
        key = div.derive_key(keys[apdu.p1], [city_f, card_f], s.algorithm)
        if process_f:
            key = div.diversify(key, process_f, s.algorithm)
        s.derived = key
        return b""

    def _cipher(self, apdu: CommandApdu) -> bytes:
        """``80 FA 00 00``: ECB-encrypt whole blocks; ``80 FA 05 00``: MAC with data = IV
        (one block) || message, answering 4 bytes [P layout]."""
        s = self.session
        if s.derived is None or s.algorithm is None:
            raise CardStatus(SW.CONDITIONS)
        size = s.algorithm.block_size
        if apdu.p1 == 0x00:
            if not apdu.data or len(apdu.data) % size:
                raise CardStatus(SW.WRONG_LENGTH)
            return div.ecb_encrypt(s.derived, apdu.data, s.algorithm)
        if apdu.p1 == 0x05:
            if len(apdu.data) < size:
                raise CardStatus(SW.WRONG_LENGTH)
            return div.mac(s.derived, apdu.data[:size], apdu.data[size:], s.algorithm)
        raise CardStatus(SW.BAD_P1P2)
