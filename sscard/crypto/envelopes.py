"""SM2 key envelopes: how the KMC hands an escrowed encryption key to a card (or a person).

Two encodings of the same content, both produced by one :func:`wrap` call:

* GM/T 0009-2012 §7.4 ``SM2EnvelopedKey`` (ASN.1, DER)::

      SM2EnvelopedKey ::= SEQUENCE {
          symAlgID               AlgorithmIdentifier,   -- sm4-ecb 1.2.156.10197.1.104.1
          symEncryptedKey        SM2Cipher,             -- the session key, SM2-encrypted
          Sm2PublicKey           BIT STRING,            -- 04 || X || Y of the enveloped key
          Sm2EncryptedPrivateKey BIT STRING }           -- SM4-ECB(session key, d), 32 bytes

* GM/T 0016-2012 ``ENVELOPEDKEYBLOB`` (the SKF C structure a card imports, CARD_SPEC.md §4),
  388 bytes, multi-byte integers little-endian, coordinates right-aligned in 64-byte fields::

      ULONG Version (1) | ULONG ulSymmAlgID (SGD_SM4_ECB 0x401) | ULONG ulBits (256)
      BYTE  cbEncryptedPriKey[64]            -- SM4-ECB(session key, d), right-aligned
      ECCPUBLICKEYBLOB  { ULONG BitLen; BYTE X[64]; BYTE Y[64] }
      ECCCIPHERBLOB     { BYTE X[64]; BYTE Y[64]; BYTE HASH[32]; ULONG CipherLen; BYTE Cipher[16] }

The session key is a fresh random 16-byte SM4 key, encrypted to the recipient's SM2 *signing*
public key (the card's key, which never leaves the card), as GM/T 0016 prescribes.

API for the three users:

* the KMC: ``env = wrap(enc_private_key, recipient_public_key)``; then ``env.to_der()`` and
  ``env.to_blob()`` (the 388-byte ENVELOPEDKEYBLOB).
* anyone holding the recipient private key: ``unwrap(env, recipient)`` -> ``SM2PrivateKey``,
  ``recipient`` an ``SM2PrivateKey``, ``PrivateKey`` or ``KeyHandle`` that can SM2-decrypt.
* the card emulator, which does the import the way a card does (CARD_SPEC §4, step by step):
  ``env = EnvelopedKey.from_blob(data)`` (or ``from_der``); ``env.session_key_c1c3c2`` is the
  ``C1||C3||C2`` ciphertext to decrypt with the signing key (``80 4E``); then
  ``decrypt_private_value(session_key, env.encrypted_private_key)`` -> d, checked against
  ``env.public_point`` by ``check_key_pair(d, env.public_point)``.

Every parse error raises :class:`EnvelopeError` (a ``DecryptionError``) whose message names the
field that was wrong.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from typing import Protocol

from asn1crypto import algos, core

from sscard.crypto import oids, sm4
from sscard.crypto.algorithms import EncryptionScheme
from sscard.crypto.errors import DecryptionError, InvalidKey
from sscard.crypto.sm2 import (
    CipherFormat,
    N,
    SM2Cipher,
    SM2PrivateKey,
    SM2PublicKey,
    asn1_to_c1c3c2,
    c1c3c2_to_asn1,
)

#: GM/T 0006 algorithm identifier of SM4 in ECB mode, as SKF structures carry it.
SGD_SM4_ECB = 0x00000401
#: ENVELOPEDKEYBLOB version (GM/T 0016 says 1).
BLOB_VERSION = 1
SESSION_KEY_LEN = 16
ENCRYPTED_PRIVATE_KEY_LEN = 32
#: 4+4+4 + 64 + (4+64+64) + (64+64+32+4+16)
BLOB_LEN = 388

_HEADER = struct.Struct("<III")
_ULONG = struct.Struct("<I")


class EnvelopeError(DecryptionError):
    """A key envelope is malformed, for the wrong recipient, or does not hold a valid key."""


class SM2EnvelopedKey(core.Sequence):
    """GM/T 0009-2012 §7.4 SM2EnvelopedKey."""

    _fields = [
        ("sym_alg_id", algos.EncryptionAlgorithm),
        ("sym_encrypted_key", SM2Cipher),
        ("sm2_public_key", core.OctetBitString),
        ("sm2_encrypted_private_key", core.OctetBitString),
    ]


class SM2Decryptor(Protocol):
    """Anything that SM2-decrypts: ``PrivateKey``, ``SoftwareKey`` or another ``KeyHandle``."""

    def decrypt(self, ciphertext: bytes, scheme: EncryptionScheme | None = None) -> bytes: ...


@dataclass(frozen=True)
class EnvelopedKey:
    """The content common to SM2EnvelopedKey and ENVELOPEDKEYBLOB.

    ``session_key_c1c3c2``: the SM2 ciphertext of the session key, raw ``04||x||y || C3 || C2``
    (C2 is 16 bytes); ``public_point``: 65-byte ``04||X||Y`` of the enveloped key;
    ``encrypted_private_key``: SM4-ECB(session key, d as 32 big-endian bytes).
    """

    session_key_c1c3c2: bytes
    public_point: bytes
    encrypted_private_key: bytes

    def __post_init__(self) -> None:
        c = self.session_key_c1c3c2
        if len(c) != 65 + 32 + SESSION_KEY_LEN or c[0] != 4:
            raise EnvelopeError(
                "session key ciphertext must be C1(04||x||y) || C3(32) || C2(16) = 113 bytes, "
                f"got {len(c)}"
            )
        if len(self.public_point) != 65 or self.public_point[0] != 4:
            raise EnvelopeError("enveloped public key must be a 65-byte uncompressed point")
        if len(self.encrypted_private_key) != ENCRYPTED_PRIVATE_KEY_LEN:
            raise EnvelopeError(
                f"encrypted private key must be {ENCRYPTED_PRIVATE_KEY_LEN} bytes, "
                f"got {len(self.encrypted_private_key)}"
            )

    # -- GM/T 0009 ASN.1 -------------------------------------------------------------------
    def to_asn1(self) -> SM2EnvelopedKey:
        return SM2EnvelopedKey(
            {
                "sym_alg_id": {"algorithm": "sm4_ecb"},
                "sym_encrypted_key": SM2Cipher.load(c1c3c2_to_asn1(self.session_key_c1c3c2)),
                "sm2_public_key": self.public_point,
                "sm2_encrypted_private_key": self.encrypted_private_key,
            }
        )

    def to_der(self) -> bytes:
        return self.to_asn1().dump()

    @classmethod
    def from_der(cls, der: bytes) -> EnvelopedKey:
        try:
            parsed = SM2EnvelopedKey.load(der, strict=True)
            alg = parsed["sym_alg_id"]["algorithm"].dotted
            cipher_der = parsed["sym_encrypted_key"].dump()
            point = _bit_string_bytes(parsed["sm2_public_key"], "Sm2PublicKey")
            enc = _bit_string_bytes(parsed["sm2_encrypted_private_key"], "Sm2EncryptedPrivateKey")
        except EnvelopeError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                RecursionError) as exc:  # what asn1crypto raises deep inside on bad input
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EnvelopeError(f"not a GM/T 0009 SM2EnvelopedKey: {msg}") from None
        if alg != oids.SM4_ECB:
            raise EnvelopeError(
                f"SM2EnvelopedKey symAlgID is {alg}; only SM4-ECB ({oids.SM4_ECB}) is supported"
            )
        try:
            c1c3c2 = asn1_to_c1c3c2(cipher_der)
        except DecryptionError as exc:
            raise EnvelopeError(f"SM2EnvelopedKey symEncryptedKey: {exc}") from None
        return cls(c1c3c2, point, enc)

    # -- GM/T 0016 ENVELOPEDKEYBLOB ---------------------------------------------------------
    def to_blob(self) -> bytes:
        c = self.session_key_c1c3c2
        x, y, c3, c2 = c[1:33], c[33:65], c[65:97], c[97:]
        out = bytearray(_HEADER.pack(BLOB_VERSION, SGD_SM4_ECB, 256))
        out += _right_align(self.encrypted_private_key, 64)
        out += _ULONG.pack(256)
        out += _right_align(self.public_point[1:33], 64) + _right_align(self.public_point[33:], 64)
        out += _right_align(x, 64) + _right_align(y, 64) + c3
        out += _ULONG.pack(len(c2)) + c2
        assert len(out) == BLOB_LEN
        return bytes(out)

    @classmethod
    def from_blob(cls, blob: bytes) -> EnvelopedKey:
        if len(blob) != BLOB_LEN:
            raise EnvelopeError(
                f"ENVELOPEDKEYBLOB must be {BLOB_LEN} bytes (16-byte session key), got {len(blob)}"
            )
        version, alg_id, bits = _HEADER.unpack_from(blob, 0)
        if version != BLOB_VERSION:
            raise EnvelopeError(f"ENVELOPEDKEYBLOB Version is {version}, expected {BLOB_VERSION}")
        if alg_id != SGD_SM4_ECB:
            raise EnvelopeError(
                f"ENVELOPEDKEYBLOB ulSymmAlgID is 0x{alg_id:08X}, only SGD_SM4_ECB "
                f"(0x{SGD_SM4_ECB:08X}) is supported"
            )
        if bits != 256:
            raise EnvelopeError(f"ENVELOPEDKEYBLOB ulBits is {bits}, expected 256 (SM2)")
        pos = 12
        enc = _take_right_aligned(blob[pos:pos + 64], 32, "cbEncryptedPriKey")
        pos += 64
        (bit_len,) = _ULONG.unpack_from(blob, pos)
        if bit_len != 256:
            raise EnvelopeError(f"ENVELOPEDKEYBLOB PubKey.BitLen is {bit_len}, expected 256")
        pos += 4
        px = _take_right_aligned(blob[pos:pos + 64], 32, "PubKey.XCoordinate")
        py = _take_right_aligned(blob[pos + 64:pos + 128], 32, "PubKey.YCoordinate")
        pos += 128
        cx = _take_right_aligned(blob[pos:pos + 64], 32, "ECCCipherBlob.XCoordinate")
        cy = _take_right_aligned(blob[pos + 64:pos + 128], 32, "ECCCipherBlob.YCoordinate")
        pos += 128
        c3 = blob[pos:pos + 32]
        pos += 32
        (cipher_len,) = _ULONG.unpack_from(blob, pos)
        pos += 4
        if cipher_len != SESSION_KEY_LEN:
            raise EnvelopeError(
                f"ENVELOPEDKEYBLOB ECCCipherBlob.CipherLen is {cipher_len}, expected "
                f"{SESSION_KEY_LEN} (an SM4 session key)"
            )
        c2 = blob[pos:pos + cipher_len]
        return cls(b"\x04" + cx + cy + c3 + c2, b"\x04" + px + py, enc)


def _bit_string_bytes(value: core.OctetBitString, what: str) -> bytes:
    contents = value.contents or b""
    if not contents or contents[0] != 0:
        raise EnvelopeError(f"SM2EnvelopedKey {what}: BIT STRING must have no unused bits")
    return bytes(contents[1:])


def _right_align(value: bytes, width: int) -> bytes:
    return b"\x00" * (width - len(value)) + value


def _take_right_aligned(field: bytes, size: int, what: str) -> bytes:
    if any(field[: len(field) - size]):
        raise EnvelopeError(
            f"ENVELOPEDKEYBLOB {what}: value must be right-aligned in {len(field)} bytes "
            f"(the first {len(field) - size} must be zero)"
        )
    return field[len(field) - size:]


def encrypt_private_value(session_key: bytes, d: int) -> bytes:
    """SM4-ECB(session key, d as 32 big-endian bytes): the Sm2EncryptedPrivateKey field."""
    return sm4.ecb_encrypt(session_key, d.to_bytes(32, "big"))


def decrypt_private_value(session_key: bytes, encrypted_private_key: bytes) -> int:
    """Inverse of :func:`encrypt_private_value`; raises EnvelopeError if d is out of range."""
    if len(session_key) != SESSION_KEY_LEN:
        raise EnvelopeError(f"session key must be {SESSION_KEY_LEN} bytes, got {len(session_key)}")
    d = int.from_bytes(sm4.ecb_decrypt(session_key, encrypted_private_key), "big")
    if not 1 <= d < N - 1:
        raise EnvelopeError("enveloped private key is out of range (wrong session key?)")
    return d


def check_key_pair(d: int, public_point: bytes) -> SM2PrivateKey:
    """The private key for scalar ``d``, provided it matches ``public_point``."""
    try:
        key = SM2PrivateKey.from_private_value(d)
    except InvalidKey as exc:
        raise EnvelopeError(f"enveloped private key is not a valid SM2 key: {exc}") from None
    if key.public_key().point != public_point:
        raise EnvelopeError("enveloped private key does not match the enveloped public key")
    return key


def wrap(
    private_key: SM2PrivateKey,
    recipient: SM2PublicKey,
    *,
    session_key: bytes | None = None,
) -> EnvelopedKey:
    """Envelope ``private_key`` for the holder of ``recipient``'s private key.

    ``session_key`` is for reproducible test vectors only; by default a fresh random one.
    """
    if not isinstance(private_key, SM2PrivateKey) or not isinstance(recipient, SM2PublicKey):
        raise TypeError("wrap() takes an SM2PrivateKey and an SM2PublicKey (use .raw on "
                        "sscard.crypto.asymmetric keys)")
    key = secrets.token_bytes(SESSION_KEY_LEN) if session_key is None else session_key
    if len(key) != SESSION_KEY_LEN:
        raise ValueError(f"session key must be {SESSION_KEY_LEN} bytes")
    return EnvelopedKey(
        session_key_c1c3c2=recipient.encrypt(key, CipherFormat.C1C3C2),
        public_point=private_key.public_key().point,
        encrypted_private_key=encrypt_private_value(key, private_key.private_value()),
    )


def decrypt_session_key(envelope: EnvelopedKey, recipient: SM2PrivateKey | SM2Decryptor) -> bytes:
    """The 16-byte session key, SM2-decrypted with the recipient's private key."""
    try:
        if isinstance(recipient, SM2PrivateKey):
            key = recipient.decrypt(envelope.session_key_c1c3c2, CipherFormat.C1C3C2)
        else:
            key = recipient.decrypt(envelope.session_key_c1c3c2, EncryptionScheme.SM2_C1C3C2)
    except DecryptionError as exc:
        raise EnvelopeError(
            f"cannot decrypt the envelope's session key (not the recipient's key?): {exc}"
        ) from None
    if len(key) != SESSION_KEY_LEN:
        raise EnvelopeError(f"envelope session key is {len(key)} bytes, expected 16")
    return key


def unwrap(
    envelope: EnvelopedKey | bytes, recipient: SM2PrivateKey | SM2Decryptor
) -> SM2PrivateKey:
    """The enveloped SM2 private key. ``envelope`` may be an EnvelopedKey, SM2EnvelopedKey DER
    or a 388-byte ENVELOPEDKEYBLOB."""
    env = parse(envelope) if isinstance(envelope, bytes | bytearray) else envelope
    session_key = decrypt_session_key(env, recipient)
    d = decrypt_private_value(session_key, env.encrypted_private_key)
    return check_key_pair(d, env.public_point)


def parse(data: bytes) -> EnvelopedKey:
    """Either encoding: DER (starts with a SEQUENCE tag, 0x30) or ENVELOPEDKEYBLOB."""
    data = bytes(data)
    if data[:1] == b"\x30":
        return EnvelopedKey.from_der(data)
    return EnvelopedKey.from_blob(data)
