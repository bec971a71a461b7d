"""Per-card key diversification and the cryptograms built on it (CARD_SPEC §3).

A pure module (bytes in, bytes out) shared by the card emulator, the emulated PSAM, the card
client and the KMC, which keeps the card master keys. The key hierarchy is:

    ministry root key --province factor--> provincial key --city factor--> city key
                      --card factor--> per-card key

Each arrow is one call of :func:`diversify`. Factors are 8 bytes:

- card level: the last 8 bytes of the card's ATR (:func:`card_factor`);
- city level: ASCII of the 6-digit region code + ``"sx"`` (:func:`city_factor`);
- province level: ASCII of the 2-digit province code + ``"0000sh"`` (:func:`province_factor`).

Keys are 16 bytes for both algorithms: two-key 3DES for generation-2 (DES) cards, SM4 for
generation 3. One level of diversification is the PBOC rule:

- 3DES: ``K' = 3DES_K(F) || 3DES_K(~F)``;
- SM4:  ``K' = SM4_K(F || ~F)``.

Typical use (KMC or PSAM side)::

    alg = CardAlgorithm.for_generation(3)
    key = derive_key(city_master, [city_factor("639900"), card_factor(atr)], alg)
    cryptogram = external_auth_cryptogram(key, challenge, alg)   # for 00 82 00 <key id>

Everything marked [P] in the docstrings is this project's choice where no public source exists.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from Crypto.Cipher import DES

from sscard.crypto import sm4

FACTOR_LEN = 8
KEY_LEN = 16


class CardAlgorithm(enum.Enum):
    """The algorithm of a card's environment; the value is the SSSE FCI algorithm flag."""

    DES3 = 0x01
    SM4 = 0x03

    @classmethod
    def for_generation(cls, generation: int) -> CardAlgorithm:
        if generation in (1, 2):
            return cls.DES3
        if generation == 3:
            return cls.SM4
        raise ValueError(f"card generation must be 1, 2 or 3, got {generation}")

    @property
    def block_size(self) -> int:
        return 8 if self is CardAlgorithm.DES3 else 16


# --- factors ------------------------------------------------------------------------------------


def card_factor(atr: bytes) -> bytes:
    """Card-level factor: the last 8 bytes of the ATR."""
    if len(atr) < FACTOR_LEN:
        raise ValueError(f"ATR of {len(atr)} bytes is too short for a card factor")
    return bytes(atr[-FACTOR_LEN:])


def city_factor(region_code: str) -> bytes:
    """City-level factor: ASCII of the 6-digit region code followed by ``sx``."""
    if len(region_code) != 6 or not region_code.isdigit():
        raise ValueError(f"region code must be 6 digits, got {region_code!r}")
    return region_code.encode("ascii") + b"sx"


def province_factor(code: str) -> bytes:
    """Province-level factor: ASCII of the 2-digit province code + ``0000`` + ``sh``.
    Accepts the province code or any region code starting with it."""
    if len(code) not in (2, 6) or not code.isdigit():
        raise ValueError(f"province code must be 2 digits (or a 6-digit region code), got {code!r}")
    return code[:2].encode("ascii") + b"0000sh"


# --- block ciphers ------------------------------------------------------------------------------


def _check_key(key: bytes) -> None:
    if len(key) != KEY_LEN:
        raise ValueError(f"card keys are {KEY_LEN} bytes, got {len(key)}")


def _des(key8: bytes) -> Any:
    # DES is what generation-2 cards run; the card standard, not this code, chooses it.
    return DES.new(key8, DES.MODE_ECB)  # noqa: S304


def des3_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """Two-key 3DES EDE in ECB. Built from single DES so that keys whose halves are equal
    (legal on cards, where they mean single DES) are not refused."""
    _check_key(key)
    if len(data) % 8:
        raise ValueError(f"3DES input must be a multiple of 8 bytes, got {len(data)}")
    k1 = _des(key[:8])
    k2 = _des(key[8:])
    return k1.encrypt(k2.decrypt(k1.encrypt(data)))


def des3_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check_key(key)
    if len(data) % 8:
        raise ValueError(f"3DES input must be a multiple of 8 bytes, got {len(data)}")
    k1 = _des(key[:8])
    k2 = _des(key[8:])
    return k1.decrypt(k2.encrypt(k1.decrypt(data)))


def ecb_encrypt(key: bytes, data: bytes, algorithm: CardAlgorithm) -> bytes:
    _check_key(key)
    if algorithm is CardAlgorithm.DES3:
        return des3_ecb_encrypt(key, data)
    return sm4.ecb_encrypt(key, data)


def ecb_decrypt(key: bytes, data: bytes, algorithm: CardAlgorithm) -> bytes:
    _check_key(key)
    if algorithm is CardAlgorithm.DES3:
        return des3_ecb_decrypt(key, data)
    return sm4.ecb_decrypt(key, data)


# --- diversification ----------------------------------------------------------------------------


def _invert(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def diversify(key: bytes, factor: bytes, algorithm: CardAlgorithm) -> bytes:
    """One level of diversification: a 16-byte child key from a 16-byte parent key."""
    _check_key(key)
    if len(factor) != FACTOR_LEN:
        raise ValueError(f"diversification factor must be {FACTOR_LEN} bytes, got {len(factor)}")
    if algorithm is CardAlgorithm.DES3:
        return des3_ecb_encrypt(key, factor) + des3_ecb_encrypt(key, _invert(factor))
    return sm4.ecb_encrypt(key, factor + _invert(factor))


def derive_key(master: bytes, factors: Sequence[bytes], algorithm: CardAlgorithm) -> bytes:
    """Diversify ``master`` by each factor in turn (highest level first)."""
    key = master
    for factor in factors:
        key = diversify(key, factor, algorithm)
    return key


def card_key(
    provincial_key: bytes, region_code: str, atr: bytes, algorithm: CardAlgorithm
) -> bytes:
    """The per-card key from a provincial-level key (what a PSAM or the provincial HSM holds):
    diversified by the city factor of ``region_code`` and then by the card factor of ``atr``."""
    return derive_key(
        provincial_key, [city_factor(region_code), card_factor(atr)], algorithm
    )


# --- cryptograms --------------------------------------------------------------------------------


def _fold(block: bytes) -> bytes:
    """E[0:8] XOR E[8:16] (how SM4 answers fit the 8-byte fields of the commands)."""
    return bytes(a ^ b for a, b in zip(block[:8], block[8:16], strict=True))


def encrypt_challenge(key: bytes, challenge: bytes, algorithm: CardAlgorithm) -> bytes:
    """The 8-byte answer to an 8-byte challenge: 3DES_K(R), or for SM4 E[0:8] XOR E[8:16]
    with E = SM4_K(R padded with 00 to 16 bytes) (CARD_SPEC §3)."""
    if len(challenge) not in (8, 16):
        raise ValueError(f"challenge must be 8 or 16 bytes, got {len(challenge)}")
    if algorithm is CardAlgorithm.DES3:
        if len(challenge) != 8:
            raise ValueError("3DES challenges are 8 bytes")
        return des3_ecb_encrypt(key, challenge)
    return _fold(sm4.ecb_encrypt(key, challenge.ljust(16, b"\x00")))


def external_auth_cryptogram(card_key_: bytes, challenge: bytes, algorithm: CardAlgorithm) -> bytes:
    """What the terminal sends in EXTERNAL AUTHENTICATE after GET CHALLENGE returned
    ``challenge``; ``card_key_`` is the card's diversified key for that key id."""
    return encrypt_challenge(card_key_, challenge, algorithm)


def internal_auth_answer(
    card_key_: bytes, process_factor: bytes, data: bytes, algorithm: CardAlgorithm
) -> bytes:
    """The card's answer to INTERNAL AUTHENTICATE (``00 88 00 00 10 <factor> <data>``): the
    per-card key diversified once more by the process factor, then applied to the data [P]."""
    return encrypt_challenge(diversify(card_key_, process_factor, algorithm), data, algorithm)


# --- secure messaging ---------------------------------------------------------------------------


def pad80(data: bytes, block: int) -> bytes:
    """ISO/IEC 9797-1 padding method 2: 80 then 00 to a whole block."""
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % block)


def mac(key: bytes, iv: bytes, data: bytes, algorithm: CardAlgorithm) -> bytes:
    """4-byte secure-messaging MAC over ``data`` (CARD_SPEC §3).

    SM4: SM4-CBC over data padded 80 00.. to 16 bytes with the challenge (00-padded to 16) as
    IV, then the XOR of the four 4-byte words of the last block. 3DES: the ISO 9797-1 retail MAC
    (single-DES CBC with the left key half, 3DES on the last block), first 4 bytes [P]."""
    _check_key(key)
    size = algorithm.block_size
    iv = iv.ljust(size, b"\x00")
    if len(iv) != size:
        raise ValueError(f"MAC IV must be at most {size} bytes")
    blocks = pad80(data, size)
    if algorithm is CardAlgorithm.SM4:
        last = sm4.cbc_encrypt(key, iv, blocks, pad=False)[-16:]
        words = [int.from_bytes(last[i : i + 4], "big") for i in range(0, 16, 4)]
        return (words[0] ^ words[1] ^ words[2] ^ words[3]).to_bytes(4, "big")
    left = _des(key[:8])
    chain = iv
    for i in range(0, len(blocks), 8):
        block = bytes(a ^ b for a, b in zip(chain, blocks[i : i + 8], strict=True))
        chain = left.encrypt(block) if i + 8 < len(blocks) else des3_ecb_encrypt(key, block)
    return chain[:4]


def pin_block(pin: str, algorithm: CardAlgorithm) -> bytes:
    """Plain PIN block for unblock/reload: length byte, packed BCD PIN (F-padded), then 80 00..
    to a whole block [P]."""
    if not pin.isdigit() or not 4 <= len(pin) <= 16:
        raise ValueError("PIN must be 4 to 16 digits")
    packed = bytes.fromhex(pin + "F" * (len(pin) % 2))
    return pad80(bytes([len(pin)]) + packed, algorithm.block_size)


def parse_pin_block(block: bytes) -> str:
    """Inverse of :func:`pin_block`; raises ValueError on a malformed block."""
    if not block:
        raise ValueError("empty PIN block")
    length = block[0]
    if not 4 <= length <= 16:
        raise ValueError(f"PIN block declares a {length}-digit PIN")
    packed = block[1 : 1 + (length + 1) // 2]
    digits = packed.hex().upper()[:length]
    if not digits.isdigit():
        raise ValueError("PIN block holds non-digit nibbles")
    rest = block[1 + (length + 1) // 2 :]
    if not rest or rest[0] != 0x80 or any(rest[1:]):
        raise ValueError("PIN block padding is not 80 00..")
    return digits
