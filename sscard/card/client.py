"""The card client: a typed API over the APDUs of CARD_SPEC §2-4, on any transport.

Status words become the exceptions of :mod:`sscard.card.errors`; 61xx (GET RESPONSE) and 6Cxx
(wrong Le) are handled here so callers never see them."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sscard.card import codec
from sscard.card.apdu import CommandApdu, ResponseApdu
from sscard.card.auth import Authenticator, CardIdentity
from sscard.card.diversify import CardAlgorithm
from sscard.card.errors import (
    AuthenticationFailed,
    BadData,
    CardError,
    FileNotFound,
    error_for_status,
)
from sscard.card.records import EF05_LAYOUT, EF06_LAYOUT, CardData, HolderData
from sscard.card.t0 import transceive
from sscard.card.transport import Transport
from sscard.card.validation import validate_pin
from sscard.crypto import sm4
from sscard.crypto.envelopes import EnvelopedKey
from sscard.crypto.hashes import sm3

SSSE_NAME = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
PKI_DDF_NAME = bytes.fromhex("504B492EC9E7BBE1B1A3D5CF")
PKI_ADF_NAME = bytes.fromhex("53532E434552542E41444631")

EF05_SFI, EF06_SFI, EF0D_SFI = 0x05, 0x06, 0x0D
SIGN_PUB, ENC_PUB, SIGN_CERT, ENC_CERT = 0x0012, 0x0014, 0x0018, 0x0019
CERT_FIDS = {"sign": SIGN_CERT, "enc": ENC_CERT}

KEY_INTERNAL_AUTH, KEY_READ, KEY_UPDATE, KEY_PIN_UNBLOCK, KEY_PIN_RELOAD = (
    0x09, 0x0A, 0x0B, 0x0C, 0x0D)
CHUNK = 0xE0  # bytes per UPDATE/READ BINARY for certificates


def pin_bcd(pin: str) -> bytes:
    """Packed BCD, odd lengths F-padded (CARD_SPEC §2)."""
    validate_pin(pin)
    return bytes.fromhex(pin + "F" * (len(pin) % 2))


def pki_pin_ctk(pin: str) -> bytes:
    """CTK = first 16 bytes of SM3(PIN as packed BCD) (CARD_SPEC §4)."""
    return sm3(pin_bcd(pin))[:16]


def pki_pin_cryptogram(pin: str, challenge: bytes) -> bytes:
    return sm4.ecb_encrypt(pki_pin_ctk(pin), challenge.ljust(16, b"\x00"))


@dataclass(frozen=True)
class CardInfo:
    atr: bytes
    algorithm: CardAlgorithm
    card: CardData
    holder: HolderData

    @property
    def historical_bytes(self) -> bytes:
        """ATR historical bytes (T0's low nibble counts them; they end the ATR here)."""
        count = self.atr[1] & 0x0F
        return self.atr[-count:] if count else b""


class CardClient:
    """One card on one transport. ``apdu_count`` counts exchanged APDUs (for benchmarks)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.apdu_count = 0
        self._algorithm: CardAlgorithm | None = None
        self._region: str | None = None
        self.trace: Callable[[bytes, bytes], None] | None = None

    # --- connection --------------------------------------------------------------------------

    def connect(self) -> bytes:
        return self.transport.connect()

    def close(self) -> None:
        self.transport.disconnect()

    def __enter__(self) -> CardClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def atr(self) -> bytes:
        return self.transport.atr

    # --- exchange ----------------------------------------------------------------------------

    def _exchange(self, raw: bytes) -> ResponseApdu:
        self.apdu_count += 1
        answer = self.transport.transmit(raw)
        if self.trace:
            self.trace(raw, answer)
        return ResponseApdu.parse(answer)

    def send(self, apdu: CommandApdu, what: str, pin_command: bool = False) -> bytes:
        """Send, follow 61xx and 6Cxx (:mod:`sscard.card.t0`), and raise the precise error for
        any other non-9000."""
        sw, data = transceive(lambda a: self._exchange(a.encode()), apdu, what)
        if sw != 0x9000:
            raise error_for_status(sw, what, pin_command=pin_command)
        return data

    # --- selection ---------------------------------------------------------------------------

    def select_ssse(self) -> CardAlgorithm:
        fci = self.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, SSSE_NAME), "SELECT SSSE")
        flag = 0x01
        marker = fci.find(bytes.fromhex("9F0C"))
        if marker >= 0 and fci[marker + 2 : marker + 4] == b"\x03\x86" and len(fci) > marker + 5:
            flag = fci[marker + 5]
        try:
            self._algorithm = CardAlgorithm(flag)
        except ValueError:
            raise CardError(f"card algorithm flag {flag:02X} is not supported "
                            "(01 DES/3DES, 03 SM4)") from None
        return self._algorithm

    def select_file(self, fid: int) -> None:
        self.send(CommandApdu(0x00, 0xA4, 0x00, 0x00, fid.to_bytes(2, "big")),
                  f"SELECT {fid:04X}")

    def select_pki(self) -> None:
        self.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PKI_DDF_NAME), "SELECT PKI DDF")
        self.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PKI_ADF_NAME), "SELECT PKI ADF")

    @property
    def algorithm(self) -> CardAlgorithm:
        if self._algorithm is None:
            self.select_ssse()
        assert self._algorithm is not None
        return self._algorithm

    # --- records and binaries ----------------------------------------------------------------

    def read_record(self, sfi: int, number: int, value_length: int) -> codec.Tlv:
        raw = self.send(CommandApdu(0x00, 0xB2, number, (sfi << 3) | 4, le=value_length + 2),
                        f"READ RECORD {number} of SFI {sfi:02X}")
        try:
            return codec.tlv_decode(raw)
        except codec.CodecError as exc:
            raise BadData(0x6A80, "READ RECORD", str(exc)) from None

    def read_record_by_tag(self, tag: int, value_length: int) -> codec.Tlv:
        raw = self.send(CommandApdu(0x00, 0xB2, tag, 0x00, le=value_length + 2),
                        f"READ RECORD tag {tag:02X}")
        return codec.tlv_decode(raw)

    def update_record(self, sfi: int, number: int, tlv: codec.Tlv) -> None:
        self.send(CommandApdu(0x00, 0xDC, number, (sfi << 3) | 4, tlv.encode()),
                  f"UPDATE RECORD {number} of SFI {sfi:02X}")

    def _read_layout(self, sfi: int, layout: dict[int, tuple[int, int]]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for tag, (number, length) in layout.items():
            tlv = self.read_record(sfi, number, length)
            if tlv.tag != tag:
                raise CardError(f"record {number} of SFI {sfi:02X} has tag {tlv.tag:02X}, "
                                f"expected {tag:02X}")
            out[tag] = tlv.value
        return out

    def read_card_data(self) -> CardData:
        self.select_ssse()
        records = self._read_layout(EF05_SFI, EF05_LAYOUT)
        self._region = codec.bcd_decode(records[0x01][:3])
        return CardData.from_records(records)

    def read_holder_data(self) -> HolderData:
        return HolderData.from_records(self._read_layout(EF06_SFI, EF06_LAYOUT))

    def read_identification(self) -> dict[str, str] | None:
        """EF0D of third-generation cards: person identification code (tag EA) and the region
        of first application (tag EB); None on cards without EF0D."""
        try:
            code = self.read_record(EF0D_SFI, 1, 12)
            region = self.read_record(EF0D_SFI, 2, 3)
        except FileNotFound:
            return None
        return {"person_id": codec.an_decode(code.value),
                "first_region": codec.bcd_decode(region.value)}

    def read_info(self) -> CardInfo:
        card = self.read_card_data()
        return CardInfo(self.atr, self.algorithm, card, self.read_holder_data())

    def _write_layout(self, sfi: int, layout: dict[int, tuple[int, int]],
                      values: dict[int, bytes]) -> None:
        for tag, (number, _length) in sorted(layout.items(), key=lambda i: i[1][0]):
            if tag in values:
                self.update_record(sfi, number, codec.Tlv(tag, values[tag]))

    def write_holder_data(self, holder: HolderData) -> None:
        """Needs prior external authentication with the update key."""
        self._write_layout(EF06_SFI, EF06_LAYOUT, holder.records())

    def write_card_data(self, card: CardData) -> None:
        self._write_layout(EF05_SFI, EF05_LAYOUT, card.records())

    def read_binary(self, offset: int, length: int) -> bytes:
        return self.send(CommandApdu(0x00, 0xB0, offset >> 8, offset & 0xFF, le=length),
                         f"READ BINARY at {offset}")

    def update_binary(self, offset: int, data: bytes) -> None:
        self.send(CommandApdu(0x00, 0xD6, offset >> 8, offset & 0xFF, data),
                  f"UPDATE BINARY at {offset}")

    # --- authentication ----------------------------------------------------------------------

    def get_challenge(self, length: int = 8) -> bytes:
        return self.send(CommandApdu(0x00, 0x84, 0x00, 0x00, le=length), "GET CHALLENGE")

    def identity(self) -> CardIdentity:
        if self._region is None:
            self.read_card_data()
        assert self._region is not None
        return CardIdentity(self.atr, self._region, self.algorithm)

    def external_authenticate(self, key_id: int, authenticator: Authenticator) -> None:
        card = self.identity()
        challenge = self.get_challenge(8)
        cryptogram = authenticator.external_cryptogram(key_id, card, challenge)
        self.send(CommandApdu(0x00, 0x82, 0x00, key_id, cryptogram),
                  f"EXTERNAL AUTHENTICATE key {key_id:02X}")

    def internal_authenticate(self, authenticator: Authenticator) -> None:
        """Check that the card is genuine; raises AuthenticationFailed if not (MOHRSS -21)."""
        card = self.identity()
        process_factor, data = secrets.token_bytes(8), secrets.token_bytes(8)
        answer = self.send(CommandApdu(0x00, 0x88, 0x00, 0x00, process_factor + data, le=8),
                           "INTERNAL AUTHENTICATE")
        expected = authenticator.internal_expected(card, process_factor, data)
        if not secrets.compare_digest(answer, expected):
            raise AuthenticationFailed(0x63C0, "INTERNAL AUTHENTICATE (card not genuine)")

    # --- PIN ---------------------------------------------------------------------------------

    def pin_tries_left(self) -> int:
        """Tries left without spending one (VERIFY with no data)."""
        self.select_ssse()
        response = self._exchange(CommandApdu(0x00, 0x20, 0x00, 0x00).encode())
        if response.sw >> 4 == 0x63C:
            return response.sw & 0x0F
        if response.sw == 0x6983:
            return 0
        if response.ok:
            return -1
        raise error_for_status(response.sw, "VERIFY (tries left)", pin_command=True)

    def verify_pin(self, pin: str) -> None:
        self.select_ssse()
        self.send(CommandApdu(0x00, 0x20, 0x00, 0x00, pin_bcd(pin)), "VERIFY PIN",
                  pin_command=True)

    def change_pin(self, old: str, new: str) -> None:
        self.select_ssse()
        self.send(CommandApdu(0x80, 0x5E, 0x01, 0x00, pin_bcd(old) + b"\xff" + pin_bcd(new)),
                  "CHANGE PIN", pin_command=True)

    def _pin_secure_messaging(self, p2: int, key_id: int, new_pin: str,
                              authenticator: Authenticator, what: str) -> None:
        validate_pin(new_pin, "new PIN")
        card = self.identity()
        self.select_ssse()
        challenge = self.get_challenge(8)
        header = bytes([0x84, 0x24, 0x00, p2])
        data = authenticator.pin_command_data(key_id, card, challenge, header, new_pin)
        self.send(CommandApdu(0x84, 0x24, 0x00, p2, data), what)

    def unblock_pin(self, new_pin: str, authenticator: Authenticator) -> None:
        self._pin_secure_messaging(0x01, KEY_PIN_UNBLOCK, new_pin, authenticator, "PIN UNBLOCK")

    def reload_pin(self, new_pin: str, authenticator: Authenticator) -> None:
        self._pin_secure_messaging(0x02, KEY_PIN_RELOAD, new_pin, authenticator, "PIN RELOAD")

    # --- PKI application ---------------------------------------------------------------------

    def verify_pki_pin(self, pin: str) -> None:
        self.select_pki()
        challenge = self.get_challenge(16)
        self.send(CommandApdu(0x00, 0x20, 0x01, 0x81, pki_pin_cryptogram(pin, challenge)),
                  "VERIFY PKI PIN", pin_command=True)

    def generate_signing_key(self) -> bytes:
        """On-card SM2 key generation; returns the new public point (65 bytes, 04||X||Y)."""
        self.select_pki()
        self.send(CommandApdu(0x80, 0x40, 0x00, 0x00, bytes.fromhex("C0020012C2020013")),
                  "GENERATE KEY PAIR")
        return self.public_point(SIGN_PUB)

    def public_point(self, fid: int = SIGN_PUB) -> bytes:
        self.select_pki()
        raw = self.send(CommandApdu(0x80, 0xC9, 0x00, 0x00, b"\xc0\x02" + fid.to_bytes(2, "big"),
                                    le=0x42), f"EXPORT PUBLIC KEY {fid:04X}")
        if len(raw) != 66 or raw[:2] != b"\xca\x40":
            raise BadData(0x6A80, "EXPORT PUBLIC KEY", f"answer {raw[:4].hex()}... is not CA40")
        return b"\x04" + raw[2:]

    def sign_digest(self, e: bytes) -> bytes:
        """PSO COMPUTE DIGITAL SIGNATURE over e = SM3(Z||M); r || s (64 bytes). Needs the PKI
        PIN verified in this session."""
        if len(e) != 32:
            raise ValueError("e must be 32 bytes (SM3)")
        raw = self.send(CommandApdu(0x00, 0x2A, 0x9E, 0x9A, e, le=64), "PSO COMPUTE DIGITAL "
                        "SIGNATURE")
        if len(raw) != 64:
            raise BadData(0x6A80, "PSO CDS", f"signature of {len(raw)} bytes, expected 64")
        return raw

    def decipher(self, c1c3c2: bytes) -> bytes:
        """PSO DECIPHER with the encryption key; ciphertext 04||X||Y||C3||C2."""
        return self.send(CommandApdu(0x00, 0x2A, 0x80, 0x86, c1c3c2, le=256), "PSO DECIPHER")

    def import_enveloped_key(self, blob: bytes | EnvelopedKey) -> None:
        """Import the KMC-wrapped encryption key pair, a GM/T 0016 ENVELOPEDKEYBLOB (after
        external authentication)."""
        env = blob if isinstance(blob, EnvelopedKey) else EnvelopedKey.from_blob(blob)
        self.select_pki()
        # the card's 80 4E takes C1 without the 04 prefix: X || Y || C3 || C2
        self.send(CommandApdu(0x80, 0x4E, 0x00, 0x00, env.session_key_c1c3c2[1:]),
                  "DECRYPT SESSION KEY")
        self.send(CommandApdu(0x80, 0x4A, 0x00, 0x00), "IMPORT SESSION KEY")
        self.send(CommandApdu(0x80, 0xC2, 0x40, 0x00,
                              bytes.fromhex("C0020014CA40") + env.public_point[1:]),
                  "IMPORT ENCRYPTION PUBLIC KEY")
        self.send(CommandApdu(0x80, 0xC2, 0xC0, 0x01,
                              bytes.fromhex("C2020015CB20") + env.encrypted_private_key),
                  "IMPORT ENCRYPTION PRIVATE KEY")

    def write_certificate(self, which: str, der: bytes) -> None:
        """Write the signing ("sign") or encryption ("enc") certificate in chunks."""
        fid = CERT_FIDS[which]
        self.select_pki()
        self.select_file(fid)
        for offset in range(0, len(der), CHUNK):
            self.update_binary(offset, der[offset : offset + CHUNK])

    def clear_certificate(self, which: str) -> None:
        """Empty a certificate file (FF-filled, as from the factory); needs prior external
        authentication with the update key."""
        der = self.read_certificate(which)
        if der is None:
            return
        self.select_file(CERT_FIDS[which])
        for offset in range(0, len(der), CHUNK):
            self.update_binary(offset, b"\xff" * min(CHUNK, len(der) - offset))

    def read_certificate(self, which: str) -> bytes | None:
        """The DER certificate, or None for an empty file (FF or 00 filled)."""
        fid = CERT_FIDS[which]
        self.select_pki()
        self.select_file(fid)
        head = self.read_binary(0, 4)
        if head[:1] in (b"\x00", b"\xff"):
            return None
        if len(head) != 4:
            raise BadData(0x6A80, f"certificate file {fid:04X}",
                          f"the card answered {len(head)} bytes where 4 were asked")
        if head[0] != 0x30 or head[1] != 0x82:
            raise BadData(0x6A80, f"certificate file {fid:04X}",
                          f"does not start with a DER SEQUENCE (30 82): {head.hex()}")
        total = 4 + int.from_bytes(head[2:4], "big")
        out = bytearray()
        while len(out) < total:
            chunk = self.read_binary(len(out), min(CHUNK, total - len(out)))
            if not chunk:  # a card that answers 9000 with no data would otherwise loop forever
                raise BadData(0x6A80, f"certificate file {fid:04X}",
                              f"the card returned no data at offset {len(out)} of {total}")
            out += chunk
        return bytes(out)
