"""GM/T 0016 ENVELOPEDKEYBLOB: an SM2 encryption key pair wrapped by the KMC for one card
(CARD_SPEC §4). Layout, multi-byte integers little-endian as in the SKF C structures:

    ULONG Version (1); ULONG ulSymmAlgID; ULONG ulBits;
    BYTE cbEncryptedPriKey[64]                   (SM4-ECB of d, right-aligned)
    ECCPUBLICKEYBLOB  { ULONG BitLen; BYTE X[64]; BYTE Y[64] }
    ECCCIPHERBLOB     { BYTE X[64]; BYTE Y[64]; BYTE HASH[32]; ULONG CipherLen; BYTE Cipher[16] }

Coordinates are right-aligned in their 64-byte fields (the SKF convention)."""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from sscard.crypto import sm4
from sscard.crypto.sm2 import CipherFormat, SM2PrivateKey, SM2PublicKey

SGD_SM4_ECB = 0x00000401
BLOB_SIZE = 4 * 3 + 64 + (4 + 64 + 64) + (64 + 64 + 32 + 4 + 16)


class EnvelopeError(ValueError):
    """A malformed ENVELOPEDKEYBLOB; the message names the field."""


def _right(value: bytes, what: str) -> bytes:
    if any(value[:-32]):
        raise EnvelopeError(f"{what}: value longer than 32 bytes (non-zero padding)")
    return value[-32:]


@dataclass(frozen=True)
class EnvelopedKeyBlob:
    symm_alg_id: int
    bits: int
    encrypted_private_key: bytes  # 32 bytes: SM4-ECB(session key, d)
    public_point: bytes  # 65 bytes, 04 || X || Y
    cipher_c1: bytes  # 64 bytes X || Y of C1
    cipher_c3: bytes  # 32 bytes
    cipher_c2: bytes  # 16 bytes: the encrypted session key
    version: int = 1

    def to_bytes(self) -> bytes:
        pad = bytes(32)
        return b"".join([
            struct.pack("<III", self.version, self.symm_alg_id, self.bits),
            pad + self.encrypted_private_key,
            struct.pack("<I", 256), pad + self.public_point[1:33], pad + self.public_point[33:],
            pad + self.cipher_c1[:32], pad + self.cipher_c1[32:], self.cipher_c3,
            struct.pack("<I", len(self.cipher_c2)), self.cipher_c2,
        ])

    @classmethod
    def from_bytes(cls, data: bytes) -> EnvelopedKeyBlob:
        if len(data) != BLOB_SIZE:
            raise EnvelopeError(f"ENVELOPEDKEYBLOB must be {BLOB_SIZE} bytes, got {len(data)}")
        version, alg, bits = struct.unpack_from("<III", data, 0)
        if version != 1:
            raise EnvelopeError(f"ENVELOPEDKEYBLOB version {version}, expected 1")
        if alg != SGD_SM4_ECB:
            raise EnvelopeError(f"ulSymmAlgID {alg:#010x} is not SGD_SM4_ECB (0x00000401)")
        enc_d = _right(data[12:76], "cbEncryptedPriKey")
        (bit_len,) = struct.unpack_from("<I", data, 76)
        if bit_len != 256:
            raise EnvelopeError(f"PubKey.BitLen {bit_len}, expected 256")
        x, y = _right(data[80:144], "PubKey.X"), _right(data[144:208], "PubKey.Y")
        cx, cy = _right(data[208:272], "ECCCipherBlob.X"), _right(data[272:336], "ECCCipherBlob.Y")
        c3 = data[336:368]
        (cipher_len,) = struct.unpack_from("<I", data, 368)
        if cipher_len != 16:
            raise EnvelopeError(f"ECCCipherBlob.CipherLen {cipher_len}, expected 16")
        return cls(alg, bits, enc_d, b"\x04" + x + y, cx + cy, c3, data[372:388], version)

    @property
    def card_cipher(self) -> bytes:
        """C1(X||Y) || C3 || C2: the data of the card's ``80 4E`` command."""
        return self.cipher_c1 + self.cipher_c3 + self.cipher_c2


def wrap_for_card(card_sign_public: SM2PublicKey, enc_key: SM2PrivateKey) -> bytes:
    """What the KMC does: a fresh SM4 session key encrypts d, SM2 under the card's signing
    public key encrypts the session key."""
    session = secrets.token_bytes(16)
    enc_d = sm4.ecb_encrypt(session, enc_key.private_value().to_bytes(32, "big"))
    c = card_sign_public.encrypt(session, CipherFormat.C1C3C2)
    return EnvelopedKeyBlob(
        SGD_SM4_ECB, 256, enc_d, enc_key.public_key().point, c[1:65], c[65:97], c[97:]
    ).to_bytes()
