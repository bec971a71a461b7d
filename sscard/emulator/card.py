"""The emulated social security card: file model, access conditions, PIN, authentication and
the third-generation PKI application of CARD_SPEC §1-4, as a pure APDU processor over a state
file. ``process(apdu) -> response`` never raises: bad input gets the status word a card would
send, and changes nothing."""

from __future__ import annotations

import enum
import hmac
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sscard.card import diversify as div
from sscard.card.apdu import ApduFormatError, CommandApdu
from sscard.card.diversify import CardAlgorithm
from sscard.crypto import sm4
from sscard.crypto.errors import CryptoError
from sscard.crypto.hashes import sm3
from sscard.crypto.sm2 import CipherFormat, SM2PrivateKey, SM2Signature
from sscard.emulator.state import read_checked, write_atomic
from sscard.emulator.testkeys import KeyId

CARD_FORMAT = "sscard-emulated-card/1"

SSSE_NAME = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
PKI_DDF_NAME = bytes.fromhex("504B492EC9E7BBE1B1A3D5CF")
PKI_ADF_NAME = bytes.fromhex("53532E434552542E41444631")

SSSE = "SSSE"
PKI_DDF = "PKI"
PKI_ADF = "ADF1"
DATA_DFS = {0xDF01: "DF01", 0xDF02: "DF02", 0xDF03: "DF03", 0xDF04: "DF04"}

# PKI application FIDs (CARD_SPEC §4)
SIGN_PUB, SIGN_PRIV, ENC_PUB, ENC_PRIV, SIGN_CERT, ENC_CERT = (
    0x0012, 0x0013, 0x0014, 0x0015, 0x0018, 0x0019)
CERT_FILE_SIZE = 0x0800  # [P]


class SW(enum.IntEnum):
    OK = 0x9000
    MEMORY = 0x6581
    WRONG_LENGTH = 0x6700
    INCOMPATIBLE_FILE = 0x6981
    SECURITY = 0x6982
    BLOCKED = 0x6983
    DATA_INVALID = 0x6984
    CONDITIONS = 0x6985
    NO_CURRENT_EF = 0x6986
    BAD_DATA = 0x6A80
    NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    BAD_P1P2 = 0x6A86
    KEY_NOT_FOUND = 0x6A88
    OFFSET = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    BAD_MAC = 0x9302


class Access(enum.Enum):
    FREE = "free"
    PIN_OR_READ_KEY = "pin or read key"
    READ_KEY = "external authentication with the read key"
    UPDATE_KEY = "external authentication with the update key"
    NEVER = "never"


class CardStatus(Exception):
    """Internal: abort the command with this status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass(frozen=True)
class FileDef:
    df: str
    fid: int
    kind: str  # "record" or "binary" or "key"
    read: Access
    update: Access
    sfi: int | None = None
    size: int = 0  # binary files

    @property
    def key(self) -> str:
        return f"{self.df}/{self.fid:04X}"


def file_model(generation: int) -> list[FileDef]:
    files = [
        FileDef(SSSE, 0x0005, "record", Access.FREE, Access.UPDATE_KEY, sfi=5),
        FileDef(SSSE, 0x0006, "record", Access.FREE, Access.UPDATE_KEY, sfi=6),
        FileDef(SSSE, 0x0007, "binary", Access.READ_KEY, Access.UPDATE_KEY, sfi=7, size=0x300),
        FileDef(SSSE, 0x0008, "binary", Access.READ_KEY, Access.UPDATE_KEY, sfi=8, size=0x1000),
    ]
    files += [FileDef(name, 0x0005, "record", Access.PIN_OR_READ_KEY, Access.UPDATE_KEY, sfi=5)
              for name in DATA_DFS.values()]
    if generation >= 3:
        files.append(FileDef(SSSE, 0x000D, "record", Access.FREE, Access.UPDATE_KEY, sfi=0x0D))
        files += [
            FileDef(PKI_ADF, SIGN_PUB, "key", Access.FREE, Access.NEVER),
            FileDef(PKI_ADF, SIGN_PRIV, "key", Access.NEVER, Access.NEVER),
            FileDef(PKI_ADF, ENC_PUB, "key", Access.FREE, Access.NEVER),
            FileDef(PKI_ADF, ENC_PRIV, "key", Access.NEVER, Access.NEVER),
            FileDef(PKI_ADF, SIGN_CERT, "binary", Access.FREE, Access.UPDATE_KEY,
                    size=CERT_FILE_SIZE),
            FileDef(PKI_ADF, ENC_CERT, "binary", Access.FREE, Access.UPDATE_KEY,
                    size=CERT_FILE_SIZE),
        ]
    return files


@dataclass
class CardState:
    """Everything a card keeps across power cycles (its EEPROM)."""

    generation: int
    atr: bytes
    pin: str
    pin_max_tries: int
    pin_tries_left: int
    keys: dict[int, bytes]  # key id -> per-card diversified key
    key_tries_left: dict[int, int]
    records: dict[str, list[bytes]]  # "DF/FID" -> TLV records
    binaries: dict[str, bytes]
    sign_d: int | None = None
    enc_d: int | None = None
    #: T=0 behaviour: data for a command sent without Le (a SELECT, case 3) comes as 61xx and
    #: then GET RESPONSE; False answers it at once with 9000, as a T=1 card does
    select_answers_61xx: bool = True
    key_max_tries: int = 5

    @property
    def algorithm(self) -> CardAlgorithm:
        return CardAlgorithm.for_generation(self.generation)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CARD_FORMAT,
            "generation": self.generation,
            "atr": self.atr.hex().upper(),
            "pin": self.pin,
            "pin_max_tries": self.pin_max_tries,
            "pin_tries_left": self.pin_tries_left,
            "keys": {f"{k:02X}": v.hex().upper() for k, v in self.keys.items()},
            "key_tries_left": {f"{k:02X}": v for k, v in self.key_tries_left.items()},
            "key_max_tries": self.key_max_tries,
            "records": {k: [r.hex().upper() for r in v] for k, v in self.records.items()},
            "binaries": {k: v.hex().upper() for k, v in self.binaries.items()},
            "sign_d": None if self.sign_d is None else f"{self.sign_d:064X}",
            "enc_d": None if self.enc_d is None else f"{self.enc_d:064X}",
            "select_answers_61xx": self.select_answers_61xx,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CardState:
        return cls(
            generation=int(doc["generation"]),
            atr=bytes.fromhex(doc["atr"]),
            pin=str(doc["pin"]),
            pin_max_tries=int(doc["pin_max_tries"]),
            pin_tries_left=int(doc["pin_tries_left"]),
            keys={int(k, 16): bytes.fromhex(v) for k, v in doc["keys"].items()},
            key_tries_left={int(k, 16): int(v) for k, v in doc["key_tries_left"].items()},
            key_max_tries=int(doc.get("key_max_tries", 5)),
            records={k: [bytes.fromhex(r) for r in v] for k, v in doc["records"].items()},
            binaries={k: bytes.fromhex(v) for k, v in doc["binaries"].items()},
            sign_d=None if doc.get("sign_d") is None else int(doc["sign_d"], 16),
            enc_d=None if doc.get("enc_d") is None else int(doc["enc_d"], 16),
            select_answers_61xx=bool(doc.get("select_answers_61xx", True)),
        )

    def save(self, path: Path) -> None:
        write_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> CardState:
        return cls.from_json(read_checked(path, CARD_FORMAT))


@dataclass
class Session:
    """What a card forgets at power-off or reset."""

    df: str = SSSE
    ef: FileDef | None = None
    challenge: bytes | None = None
    pin_verified: bool = False  # user PIN by VERIFY in the SSSE
    pki_pin_verified: bool = False  # PKI PIN by the SM3/SM4 challenge
    authenticated_keys: set[int] = field(default_factory=set)
    pending_session_key: bytes | None = None
    import_key: bytes | None = None
    pending_enc_public: bytes | None = None
    pending_response: bytes = b""


def _bcd_pin(data: bytes) -> str:
    digits = data.hex().upper().rstrip("F")
    if not digits.isdigit() or not 4 <= len(digits) <= 16:
        raise CardStatus(SW.BAD_DATA)
    return digits


def pin_ctk(pin: str) -> bytes:
    """PKI-application PIN key: the first 16 bytes of SM3(PIN as packed BCD, F-padded)."""
    return sm3(bytes.fromhex(pin + "F" * (len(pin) % 2)))[:16]


def pki_pin_cryptogram(pin: str, challenge: bytes) -> bytes:
    """``SM4-ECB(CTK, challenge padded with 00 to 16 bytes)`` (CARD_SPEC §4)."""
    return sm4.ecb_encrypt(pin_ctk(pin), challenge.ljust(16, b"\x00"))


def raw_signature(der: bytes) -> bytes:
    sig = SM2Signature.load(der)
    return sig["r"].native.to_bytes(32, "big") + sig["s"].native.to_bytes(32, "big")


class EmulatedCard:
    """One card. ``state_path`` None keeps the state in memory only (unit tests)."""

    def __init__(self, state: CardState, state_path: Path | None = None) -> None:
        self.state = state
        self.state_path = state_path
        self.files = {f.key: f for f in file_model(state.generation)}
        self.session = Session()
        self.powered = False
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> EmulatedCard:
        return cls(CardState.load(path), path)

    # --- power -------------------------------------------------------------------------------

    @property
    def atr(self) -> bytes:
        return self.state.atr

    def power_on(self) -> bytes:
        self.session = Session()
        self.powered = True
        return self.state.atr

    def power_off(self) -> None:
        self.session = Session()
        self.powered = False

    def reset(self) -> bytes:
        return self.power_on()

    # --- dispatch ----------------------------------------------------------------------------

    def process(self, raw: bytes) -> bytes:
        with self._lock:
            try:
                apdu = CommandApdu.parse(raw)
            except ApduFormatError:
                return SW.WRONG_LENGTH.to_bytes(2, "big")
            try:
                data = self._dispatch(apdu)
            except CardStatus as status:
                return status.sw.to_bytes(2, "big")
            if data and apdu.le is None and self.state.select_answers_61xx:
                # T=0 carries no response data for a case-3 command (ISO 7816-3 §12.2.3):
                # the card says how much it has (61xx) and the reader fetches it with
                # GET RESPONSE
                self.session.pending_response = data
                return (0x6100 | (len(data) & 0xFF)).to_bytes(2, "big")
            return data + SW.OK.to_bytes(2, "big")

    def _persist(self) -> None:
        if self.state_path is not None:
            try:
                self.state.save(self.state_path)
            except OSError:
                raise CardStatus(SW.MEMORY) from None

    def _dispatch(self, apdu: CommandApdu) -> bytes:
        if apdu.ins != 0xC0:
            self.session.pending_response = b""
        handlers = {
            (0x00, 0xA4): self._select,
            (0x00, 0xC0): self._get_response,
            (0x00, 0xB2): self._read_record,
            (0x00, 0xDC): self._update_record,
            (0x00, 0xB0): self._read_binary,
            (0x00, 0xD6): self._update_binary,
            (0x00, 0x84): self._get_challenge,
            (0x00, 0x82): self._external_authenticate,
            (0x00, 0x88): self._internal_authenticate,
            (0x00, 0x20): self._verify,
            (0x80, 0x5E): self._change_pin,
            (0x84, 0x24): self._pin_secure_messaging,
            (0x80, 0x40): self._generate_key_pair,
            (0x80, 0xC9): self._export_public_key,
            (0x80, 0x4E): self._decrypt_session_key,
            (0x80, 0x4A): self._import_session_key,
            (0x80, 0xC2): self._import_key,
            (0x00, 0x2A): self._perform_security_operation,
        }
        handler = handlers.get((apdu.cla, apdu.ins))
        if handler is None:
            if apdu.cla not in (0x00, 0x80, 0x84):
                raise CardStatus(SW.CLA_NOT_SUPPORTED)
            raise CardStatus(SW.INS_NOT_SUPPORTED)
        return handler(apdu)

    # --- selection ---------------------------------------------------------------------------

    def _fci(self, name: bytes) -> bytes:
        proprietary = bytes.fromhex("9F0C038601") + bytes([self.state.algorithm.value])
        body = bytes([0x84, len(name)]) + name + bytes([0xA5, len(proprietary)]) + proprietary
        return bytes([0x6F, len(body)]) + body

    def _select(self, apdu: CommandApdu) -> bytes:
        s = self.session
        if apdu.p1 == 0x04:
            pki = self.state.generation >= 3
            if apdu.data == SSSE_NAME:
                s.df, s.ef = SSSE, None
                return self._fci(SSSE_NAME)
            if apdu.data == PKI_DDF_NAME and pki:
                s.df, s.ef = PKI_DDF, None
                return self._fci(PKI_DDF_NAME)
            if apdu.data == PKI_ADF_NAME and pki and s.df in (PKI_DDF, PKI_ADF):
                s.df, s.ef = PKI_ADF, None
                return self._fci(PKI_ADF_NAME)
            raise CardStatus(SW.FILE_NOT_FOUND)
        if apdu.p1 not in (0x00, 0x02) or apdu.p2 not in (0x00, 0x0C):
            raise CardStatus(SW.BAD_P1P2)
        if len(apdu.data) != 2:
            raise CardStatus(SW.WRONG_LENGTH)
        fid = int.from_bytes(apdu.data, "big")
        if fid == 0x3F00:
            s.df, s.ef = SSSE, None
            return b""
        if fid in DATA_DFS and s.df in (SSSE, *DATA_DFS.values()):
            s.df, s.ef = DATA_DFS[fid], None
            return b""
        found = self.files.get(f"{s.df}/{fid:04X}")
        if found is None:
            raise CardStatus(SW.FILE_NOT_FOUND)
        s.ef = found
        return b""

    def _get_response(self, apdu: CommandApdu) -> bytes:
        pending = self.session.pending_response
        if not pending:
            raise CardStatus(SW.CONDITIONS)
        le = apdu.le or 256
        if le != len(pending) and apdu.le != 256:
            raise CardStatus(0x6C00 | len(pending))
        self.session.pending_response = b""
        return pending

    # --- access conditions -------------------------------------------------------------------

    def _require(self, access: Access) -> None:
        s = self.session
        ok = {
            Access.FREE: True,
            Access.NEVER: False,
            Access.PIN_OR_READ_KEY: s.pin_verified or KeyId.READ in s.authenticated_keys,
            Access.READ_KEY: KeyId.READ in s.authenticated_keys,
            Access.UPDATE_KEY: KeyId.UPDATE in s.authenticated_keys,
        }[access]
        if not ok:
            raise CardStatus(SW.SECURITY)

    # --- records -----------------------------------------------------------------------------

    def _record_file(self, p2: int) -> tuple[FileDef, str]:
        """The file P2 addresses and the addressing mode ('number' or 'tag')."""
        s = self.session
        sfi, mode = p2 >> 3, p2 & 0x07
        if p2 == 0x00:
            target, how = s.ef, "tag"
        elif mode == 0x04 and sfi == 0:
            target, how = s.ef, "number"
        elif mode == 0x04:
            target = next((f for f in self.files.values() if f.df == s.df and f.sfi == sfi),
                          None)
            if target is None:
                raise CardStatus(SW.FILE_NOT_FOUND)
            s.ef, how = target, "number"
        else:
            raise CardStatus(SW.BAD_P1P2)
        if target is None:
            raise CardStatus(SW.NO_CURRENT_EF)
        if target.kind != "record":
            raise CardStatus(SW.INCOMPATIBLE_FILE)
        return target, how

    def _record_index(self, records: list[bytes], p1: int, how: str) -> int:
        if how == "number":
            if not 1 <= p1 <= len(records):
                raise CardStatus(SW.RECORD_NOT_FOUND)
            return p1 - 1
        for index, record in enumerate(records):
            if record[0] == p1:
                return index
        raise CardStatus(SW.RECORD_NOT_FOUND)

    def _read_record(self, apdu: CommandApdu) -> bytes:
        target, how = self._record_file(apdu.p2)
        self._require(target.read)
        records = self.state.records[target.key]
        record = records[self._record_index(records, apdu.p1, how)]
        if apdu.le not in (None, 256, len(record)):
            raise CardStatus(0x6C00 | len(record))
        return record

    def _update_record(self, apdu: CommandApdu) -> bytes:
        target, how = self._record_file(apdu.p2)
        self._require(target.update)
        records = self.state.records[target.key]
        index = self._record_index(records, apdu.p1, how)
        old = records[index]
        new = apdu.data
        if len(new) != len(old):
            raise CardStatus(SW.WRONG_LENGTH)
        if new[0] != old[0] or new[1] != old[1]:
            raise CardStatus(SW.BAD_DATA)
        records[index] = bytes(new)
        try:
            self._persist()
        except CardStatus:
            records[index] = old
            raise
        return b""

    # --- binaries ----------------------------------------------------------------------------

    def _binary_target(self, p1: int, p2: int) -> tuple[FileDef, int]:
        s = self.session
        if p1 & 0x80:
            sfi = p1 & 0x1F
            target = next((f for f in self.files.values() if f.df == s.df and f.sfi == sfi),
                          None)
            if target is None:
                raise CardStatus(SW.FILE_NOT_FOUND)
            s.ef = target
            offset = p2
        else:
            if s.ef is None:
                raise CardStatus(SW.NO_CURRENT_EF)
            target, offset = s.ef, (p1 << 8) | p2
        if target.kind != "binary":
            raise CardStatus(SW.INCOMPATIBLE_FILE)
        return target, offset

    def _read_binary(self, apdu: CommandApdu) -> bytes:
        target, offset = self._binary_target(apdu.p1, apdu.p2)
        self._require(target.read)
        content = self.state.binaries[target.key]
        if offset >= len(content):
            raise CardStatus(SW.OFFSET)
        return content[offset : offset + (apdu.le or 256)]

    def _update_binary(self, apdu: CommandApdu) -> bytes:
        target, offset = self._binary_target(apdu.p1, apdu.p2)
        self._require(target.update)
        content = self.state.binaries[target.key]
        if not apdu.data:
            raise CardStatus(SW.WRONG_LENGTH)
        if offset + len(apdu.data) > len(content):
            raise CardStatus(SW.OFFSET)
        self.state.binaries[target.key] = (
            content[:offset] + apdu.data + content[offset + len(apdu.data):]
        )
        try:
            self._persist()
        except CardStatus:
            self.state.binaries[target.key] = content
            raise
        return b""

    # --- challenge and authentication --------------------------------------------------------

    def _get_challenge(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 or apdu.p2:
            raise CardStatus(SW.BAD_P1P2)
        if apdu.le not in (4, 8, 16):
            raise CardStatus(SW.WRONG_LENGTH)
        self.session.challenge = secrets.token_bytes(apdu.le)
        return self.session.challenge

    def _take_challenge(self) -> bytes:
        challenge = self.session.challenge
        if challenge is None:
            raise CardStatus(SW.CONDITIONS)
        self.session.challenge = None  # one challenge, one attempt
        return challenge

    def _key(self, key_id: int) -> bytes:
        key = self.state.keys.get(key_id)
        if key is None:
            raise CardStatus(SW.KEY_NOT_FOUND)
        if self.state.key_tries_left.get(key_id, 0) <= 0:
            raise CardStatus(SW.BLOCKED)
        return key

    def _key_failed(self, key_id: int) -> CardStatus:
        left = max(self.state.key_tries_left.get(key_id, 0) - 1, 0)
        self.state.key_tries_left[key_id] = left
        self._persist()
        return CardStatus(0x63C0 | left)

    def _key_succeeded(self, key_id: int) -> None:
        if self.state.key_tries_left.get(key_id) != self.state.key_max_tries:
            self.state.key_tries_left[key_id] = self.state.key_max_tries
            self._persist()

    def _external_authenticate(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0:
            raise CardStatus(SW.BAD_P1P2)
        key = self._key(apdu.p2)
        if len(apdu.data) != 8:
            raise CardStatus(SW.WRONG_LENGTH)
        challenge = self._take_challenge()
        expected = div.external_auth_cryptogram(key, challenge, self.state.algorithm)
        if not hmac.compare_digest(expected, apdu.data):
            raise self._key_failed(apdu.p2)
        self._key_succeeded(apdu.p2)
        self.session.authenticated_keys.add(apdu.p2)
        return b""

    def _internal_authenticate(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 or apdu.p2 not in (0x00, KeyId.INTERNAL_AUTH):
            raise CardStatus(SW.BAD_P1P2)
        if len(apdu.data) != 16:
            raise CardStatus(SW.WRONG_LENGTH)
        key = self._key(KeyId.INTERNAL_AUTH)
        return div.internal_auth_answer(key, apdu.data[:8], apdu.data[8:], self.state.algorithm)

    # --- PIN ---------------------------------------------------------------------------------

    def _check_pin(self, matches: bool) -> None:
        """Decrement first and persist, so that pulling the card after a wrong PIN can never
        save a try (anti-tearing), then restore the counter on success."""
        st = self.state
        if st.pin_tries_left <= 0:
            raise CardStatus(SW.BLOCKED)
        st.pin_tries_left -= 1
        self._persist()
        if not matches:
            raise CardStatus(0x63C0 | st.pin_tries_left)
        st.pin_tries_left = st.pin_max_tries
        self._persist()

    def _verify(self, apdu: CommandApdu) -> bytes:
        s, st = self.session, self.state
        if apdu.p1 == 0x00 and apdu.p2 == 0x00:
            if not apdu.data:  # ISO 7816-4: ask for the tries left
                if st.pin_tries_left <= 0:
                    raise CardStatus(SW.BLOCKED)
                raise CardStatus(0x63C0 | st.pin_tries_left)
            pin = _bcd_pin(apdu.data)
            self._check_pin(hmac.compare_digest(pin, st.pin))
            s.pin_verified = True
            return b""
        if apdu.p1 == 0x01 and apdu.p2 == 0x81:
            if st.generation < 3 or s.df != PKI_ADF:
                raise CardStatus(SW.CONDITIONS)
            if len(apdu.data) != 16:
                raise CardStatus(SW.WRONG_LENGTH)
            if st.pin_tries_left <= 0:
                raise CardStatus(SW.BLOCKED)
            challenge = self._take_challenge()
            expected = pki_pin_cryptogram(st.pin, challenge)
            self._check_pin(hmac.compare_digest(expected, apdu.data))
            s.pki_pin_verified = True
            return b""
        raise CardStatus(SW.BAD_P1P2)

    def _change_pin(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x01 or apdu.p2 != 0x00:
            raise CardStatus(SW.BAD_P1P2)
        old_raw, sep, new_raw = apdu.data.partition(b"\xff")
        if not sep:
            raise CardStatus(SW.BAD_DATA)
        old, new = _bcd_pin(old_raw), _bcd_pin(new_raw)
        self._check_pin(hmac.compare_digest(old, self.state.pin))
        self.state.pin = new
        self._persist()
        self.session.pin_verified = True
        return b""

    def _pin_secure_messaging(self, apdu: CommandApdu) -> bytes:
        """``84 24 00 P2``: P2 01 unblock, 02 reload [P]; data = encrypted PIN block || MAC."""
        key_id = {0x01: KeyId.PIN_UNBLOCK, 0x02: KeyId.PIN_RELOAD}.get(apdu.p2)
        if apdu.p1 != 0 or key_id is None:
            raise CardStatus(SW.BAD_P1P2)
        alg = self.state.algorithm
        if len(apdu.data) < alg.block_size + 4 or (len(apdu.data) - 4) % alg.block_size:
            raise CardStatus(SW.WRONG_LENGTH)
        key = self._key(key_id)
        challenge = self._take_challenge()
        encrypted, mac = apdu.data[:-4], apdu.data[-4:]
        header = bytes([apdu.cla, apdu.ins, apdu.p1, apdu.p2, len(apdu.data)])
        if not hmac.compare_digest(div.mac(key, challenge, header + encrypted, alg), mac):
            raise CardStatus(SW.BAD_MAC)
        try:
            pin = div.parse_pin_block(div.ecb_decrypt(key, encrypted, alg))
        except ValueError:
            raise CardStatus(SW.BAD_DATA) from None
        self.state.pin = pin
        self.state.pin_tries_left = self.state.pin_max_tries
        self._persist()
        return b""

    # --- PKI application ---------------------------------------------------------------------

    def _in_pki(self) -> None:
        if self.state.generation < 3 or self.session.df != PKI_ADF:
            raise CardStatus(SW.CONDITIONS)

    def _generate_key_pair(self, apdu: CommandApdu) -> bytes:
        self._in_pki()
        if apdu.data != bytes.fromhex("C0020012C2020013"):
            raise CardStatus(SW.BAD_DATA)
        self._require(Access.UPDATE_KEY)
        old = self.state.sign_d
        self.state.sign_d = SM2PrivateKey.generate().private_value()
        try:
            self._persist()
        except CardStatus:
            self.state.sign_d = old
            raise
        return b""

    def _point(self, d: int | None) -> bytes:
        if d is None:
            raise CardStatus(SW.KEY_NOT_FOUND)
        return SM2PrivateKey.from_private_value(d).public_key().point

    def _export_public_key(self, apdu: CommandApdu) -> bytes:
        self._in_pki()
        if len(apdu.data) != 4 or apdu.data[:2] != b"\xc0\x02":
            raise CardStatus(SW.BAD_DATA)
        fid = int.from_bytes(apdu.data[2:], "big")
        if fid == SIGN_PUB:
            point = self._point(self.state.sign_d)
        elif fid == ENC_PUB:
            point = self._point(self.state.enc_d)
        else:
            raise CardStatus(SW.KEY_NOT_FOUND)
        return b"\xca\x40" + point[1:]

    def _decrypt_session_key(self, apdu: CommandApdu) -> bytes:
        """``80 4E``: the KMC's SM2-encrypted 16-byte session key, C1(X||Y)||C3||C2."""
        self._in_pki()
        self._require(Access.UPDATE_KEY)
        if self.state.sign_d is None:
            raise CardStatus(SW.KEY_NOT_FOUND)
        if len(apdu.data) != 64 + 32 + 16:
            raise CardStatus(SW.WRONG_LENGTH)
        key = SM2PrivateKey.from_private_value(self.state.sign_d)
        try:
            plain = key.decrypt(b"\x04" + apdu.data, CipherFormat.C1C3C2)
        except CryptoError:
            raise CardStatus(SW.DATA_INVALID) from None
        self.session.pending_session_key = plain
        return b""

    def _import_session_key(self, apdu: CommandApdu) -> bytes:
        """``80 4A``: take the decrypted session key as the key-import key."""
        self._in_pki()
        self._require(Access.UPDATE_KEY)
        if self.session.pending_session_key is None:
            raise CardStatus(SW.CONDITIONS)
        self.session.import_key = self.session.pending_session_key
        self.session.pending_session_key = None
        return b""

    def _import_key(self, apdu: CommandApdu) -> bytes:
        self._in_pki()
        self._require(Access.UPDATE_KEY)
        s = self.session
        if (apdu.p1, apdu.p2) == (0x40, 0x00):
            if len(apdu.data) != 4 + 2 + 64 or apdu.data[:6] != bytes.fromhex("C0020014CA40"):
                raise CardStatus(SW.BAD_DATA)
            s.pending_enc_public = b"\x04" + apdu.data[6:]
            return b""
        if (apdu.p1, apdu.p2) == (0xC0, 0x01):
            if len(apdu.data) != 4 + 2 + 32 or apdu.data[:6] != bytes.fromhex("C2020015CB20"):
                raise CardStatus(SW.BAD_DATA)
            if s.import_key is None or s.pending_enc_public is None:
                raise CardStatus(SW.CONDITIONS)
            d = int.from_bytes(sm4.ecb_decrypt(s.import_key, apdu.data[6:]), "big")
            try:
                point = SM2PrivateKey.from_private_value(d).public_key().point
            except CryptoError:
                raise CardStatus(SW.DATA_INVALID) from None
            if point != s.pending_enc_public:
                raise CardStatus(SW.DATA_INVALID)  # key and public key do not match
            old = self.state.enc_d
            self.state.enc_d = d
            try:
                self._persist()
            except CardStatus:
                self.state.enc_d = old
                raise
            s.import_key = s.pending_enc_public = None
            return b""
        raise CardStatus(SW.BAD_P1P2)

    def _perform_security_operation(self, apdu: CommandApdu) -> bytes:
        self._in_pki()
        if not self.session.pki_pin_verified:
            raise CardStatus(SW.SECURITY)
        if (apdu.p1, apdu.p2) == (0x9E, 0x9A):
            if len(apdu.data) != 32:
                raise CardStatus(SW.WRONG_LENGTH)
            if self.state.sign_d is None:
                raise CardStatus(SW.KEY_NOT_FOUND)
            key = SM2PrivateKey.from_private_value(self.state.sign_d)
            return raw_signature(key.sign_digest(apdu.data))
        if (apdu.p1, apdu.p2) == (0x80, 0x86):
            if self.state.enc_d is None:
                raise CardStatus(SW.KEY_NOT_FOUND)
            key = SM2PrivateKey.from_private_value(self.state.enc_d)
            try:
                return key.decrypt(apdu.data, CipherFormat.C1C3C2)
            except CryptoError:
                raise CardStatus(SW.DATA_INVALID) from None
        raise CardStatus(SW.BAD_P1P2)
