"""Short command and response APDUs (ISO/IEC 7816-4) and the status words of CARD_SPEC §2."""

from __future__ import annotations

from dataclasses import dataclass


class ApduFormatError(ValueError):
    """Bytes that are not a well-formed short C-APDU."""


@dataclass(frozen=True)
class CommandApdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None  # None: no Le; 0..256 (256 is encoded as 00)

    def encode(self) -> bytes:
        for name, value in (("CLA", self.cla), ("INS", self.ins), ("P1", self.p1),
                            ("P2", self.p2)):
            if not 0 <= value <= 0xFF:
                raise ApduFormatError(f"{name} {value:#x} does not fit one byte")
        if len(self.data) > 255:
            raise ApduFormatError(f"command data of {len(self.data)} bytes needs chaining "
                                  "(short APDUs carry at most 255)")
        out = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            out += bytes([len(self.data)]) + self.data
        if self.le is not None:
            if not 0 <= self.le <= 256:
                raise ApduFormatError(f"Le {self.le} out of range 0..256")
            out += bytes([self.le & 0xFF])
        return out

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Decode cases 1 to 4 (short); raises ApduFormatError naming the fault."""
        if len(raw) < 4:
            raise ApduFormatError(f"C-APDU of {len(raw)} bytes is shorter than its 4-byte header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0] or 256)
        lc = body[0]
        if lc == 0:
            raise ApduFormatError("extended-length APDUs are not supported")
        if len(body) == 1 + lc:
            return cls(cla, ins, p1, p2, bytes(body[1:]))
        if len(body) == 2 + lc:
            return cls(cla, ins, p1, p2, bytes(body[1 : 1 + lc]), le=body[-1] or 256)
        raise ApduFormatError(f"Lc {lc} disagrees with the {len(body) - 1} bytes that follow it")

    def __str__(self) -> str:
        return self.encode().hex(" ").upper()


@dataclass(frozen=True)
class ResponseApdu:
    data: bytes
    sw: int

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise ApduFormatError(f"R-APDU of {len(raw)} bytes lacks a status word")
        return cls(bytes(raw[:-2]), (raw[-2] << 8) | raw[-1])

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000


SW_MEANINGS: dict[int, str] = {
    0x9000: "success",
    0x6581: "memory error",
    0x6700: "wrong length",
    0x6981: "command incompatible with the file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked (PIN or key blocked)",
    0x6984: "referenced data invalid",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6988: "secure messaging data objects incorrect",
    0x6A80: "incorrect data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A86: "incorrect P1/P2",
    0x6A88: "referenced data (key) not found",
    0x6B00: "wrong parameters (offset outside the file)",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
    0x9302: "MAC invalid",
    0x9303: "application permanently blocked",
}


def describe_sw(sw: int) -> str:
    """A human meaning for any status word, including the ranges 61xx, 63Cx and 6Cxx."""
    if sw in SW_MEANINGS:
        return SW_MEANINGS[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} more response bytes available (GET RESPONSE)"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    if sw1 == 0x6C:
        return f"wrong Le, the right one is {sw2 or 256}"
    return "unknown status word"
