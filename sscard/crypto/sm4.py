"""SM4 (GB/T 32907) in ECB, CBC (PKCS#7 padding optional), GCM and CCM.

ECB, CBC and GCM are pyca/cryptography's. CCM (NIST SP 800-38C, RFC 3610; GM/T 0010 and the
card's secure messaging use it) is not offered for SM4 by pyca/cryptography nor by the system's
OpenSSL 3.0, so ``ccm_encrypt``/``ccm_decrypt`` compose it from pyca's SM4-CBC (the CBC-MAC)
and SM4-CTR: only the block formatting of SP 800-38C §A.2 is written here.
"""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sscard.crypto.errors import CryptoError, DecryptionError

BLOCK = 16

#: SM4-GCM nonces we accept: 8 to 256 bytes. SP 800-38D allows any length from 1 bit, but
#: nonces under 64 bits make the counter blocks of two messages collide after few messages,
#: and pyca/cryptography refuses both ends; 12 bytes is the recommended, fast path.
GCM_NONCE_MIN, GCM_NONCE_MAX = 8, 256
#: SM4-CCM (SP 800-38C §A.1): nonce 7-13 bytes, tag 4-16 bytes and even.
CCM_NONCE_SIZES = range(7, 14)
CCM_TAG_SIZES = (4, 6, 8, 10, 12, 14, 16)


class ParameterError(CryptoError, ValueError):
    """A nonce, IV or tag length that the mode does not allow (also a ValueError for callers
    that caught pyca/cryptography's ValueError before)."""


def _key(key: bytes) -> algorithms.SM4:
    if len(key) != 16:
        raise ParameterError(f"SM4 key must be 16 bytes, got {len(key)}")
    return algorithms.SM4(key)


def _whole_blocks(data: bytes, what: str) -> None:
    if len(data) % BLOCK:
        raise ValueError(f"SM4 {what} input must be a multiple of 16 bytes, got {len(data)}")


def ecb_encrypt(key: bytes, data: bytes) -> bytes:
    _whole_blocks(data, "ECB")
    e = Cipher(_key(key), modes.ECB()).encryptor()  # noqa: S305  (ECB is what cards and GB/T 32907 vectors use)
    return e.update(data) + e.finalize()


def ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _whole_blocks(data, "ECB")
    d = Cipher(_key(key), modes.ECB()).decryptor()  # noqa: S305
    return d.update(data) + d.finalize()


def cbc_encrypt(key: bytes, iv: bytes, data: bytes, pad: bool = True) -> bytes:
    if pad:
        p = padding.PKCS7(128).padder()
        data = p.update(data) + p.finalize()
    _whole_blocks(data, "CBC")
    e = Cipher(_key(key), modes.CBC(iv)).encryptor()
    return e.update(data) + e.finalize()


def cbc_decrypt(key: bytes, iv: bytes, data: bytes, pad: bool = True) -> bytes:
    _whole_blocks(data, "CBC")
    d = Cipher(_key(key), modes.CBC(iv)).decryptor()
    out = d.update(data) + d.finalize()
    if not pad:
        return out
    u = padding.PKCS7(128).unpadder()
    try:
        return u.update(out) + u.finalize()
    except ValueError:
        raise DecryptionError("SM4-CBC: bad padding (wrong key or corrupted data)") from None


def _gcm_nonce(nonce: bytes) -> None:
    if not GCM_NONCE_MIN <= len(nonce) <= GCM_NONCE_MAX:
        raise ParameterError(
            f"SM4-GCM nonce must be {GCM_NONCE_MIN}-{GCM_NONCE_MAX} bytes (12 recommended),"
            f" got {len(nonce)}"
        )


def gcm_encrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    """Returns ciphertext || 16-byte tag."""
    _gcm_nonce(nonce)
    e = Cipher(_key(key), modes.GCM(nonce)).encryptor()
    if aad:
        e.authenticate_additional_data(aad)
    return e.update(data) + e.finalize() + e.tag


def gcm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    _gcm_nonce(nonce)
    if len(data) < 16:
        raise DecryptionError("SM4-GCM: input shorter than the 16-byte tag")
    d = Cipher(_key(key), modes.GCM(nonce, data[-16:])).decryptor()
    if aad:
        d.authenticate_additional_data(aad)
    try:
        return d.update(data[:-16]) + d.finalize()
    except InvalidTag:
        raise DecryptionError("SM4-GCM: authentication tag mismatch") from None


def _ccm_check(nonce: bytes, tag_size: int, length: int) -> int:
    """Validate the parameters; return L, the width of the length field (15 - nonce length)."""
    if len(nonce) not in CCM_NONCE_SIZES:
        raise ParameterError(f"SM4-CCM nonce must be 7-13 bytes, got {len(nonce)}")
    if tag_size not in CCM_TAG_SIZES:
        raise ParameterError(f"SM4-CCM tag must be 4-16 bytes and even, got {tag_size}")
    width = 15 - len(nonce)
    if length >= 1 << (8 * width):
        raise ParameterError(
            f"SM4-CCM with a {len(nonce)}-byte nonce takes at most {(1 << (8 * width)) - 1}"
            f" bytes, got {length}"
        )
    return width


def _ccm_mac(cipher: algorithms.SM4, nonce: bytes, data: bytes, aad: bytes, tag_size: int,
             width: int) -> bytes:
    """The CBC-MAC T over B0 || encoded AAD || data (SP 800-38C §A.2), zero-padded blocks."""
    flags = (0x40 if aad else 0) | ((tag_size - 2) // 2) << 3 | (width - 1)
    blocks = bytes([flags]) + nonce + len(data).to_bytes(width, "big")
    if aad:
        if len(aad) < 0xFF00:
            encoded = len(aad).to_bytes(2, "big")
        elif len(aad) < 1 << 32:
            encoded = b"\xff\xfe" + len(aad).to_bytes(4, "big")
        else:
            encoded = b"\xff\xff" + len(aad).to_bytes(8, "big")
        blocks += _zero_pad(encoded + aad)
    blocks += _zero_pad(data)
    e = Cipher(cipher, modes.CBC(bytes(BLOCK))).encryptor()
    return (e.update(blocks) + e.finalize())[-BLOCK:][:tag_size]


def _zero_pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def _ccm_ctr(cipher: algorithms.SM4, nonce: bytes, width: int, data: bytes) -> bytes:
    """S0 || (data XOR S1 S2 ...): counter blocks A_i = flags || nonce || i."""
    a0 = bytes([width - 1]) + nonce + bytes(width)
    e = Cipher(cipher, modes.CTR(a0)).encryptor()
    return e.update(bytes(BLOCK) + data) + e.finalize()


def ccm_encrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"",
                tag_size: int = 16) -> bytes:
    """SM4-CCM: returns ciphertext || tag (``tag_size`` bytes)."""
    cipher = _key(key)
    width = _ccm_check(nonce, tag_size, len(data))
    mac = _ccm_mac(cipher, nonce, data, aad, tag_size, width)
    stream = _ccm_ctr(cipher, nonce, width, data)
    tag = bytes(a ^ b for a, b in zip(mac, stream[:tag_size], strict=True))
    return stream[BLOCK:] + tag


def ccm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"",
                tag_size: int = 16) -> bytes:
    """SM4-CCM: ``data`` is ciphertext || tag; no plaintext leaves unless the tag matches."""
    cipher = _key(key)
    width = _ccm_check(nonce, tag_size, max(len(data) - tag_size, 0))
    if len(data) < tag_size:
        raise DecryptionError(f"SM4-CCM: input shorter than the {tag_size}-byte tag")
    body, tag = data[:len(data) - tag_size], data[len(data) - tag_size:]
    stream = _ccm_ctr(cipher, nonce, width, body)
    plain = stream[BLOCK:]
    mac = _ccm_mac(cipher, nonce, plain, aad, tag_size, width)
    expected = bytes(a ^ b for a, b in zip(mac, stream[:tag_size], strict=True))
    if not hmac.compare_digest(expected, tag):
        raise DecryptionError("SM4-CCM: authentication tag mismatch")
    return plain
