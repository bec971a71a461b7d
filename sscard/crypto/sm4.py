"""SM4 (GB/T 32907) in ECB, CBC (PKCS#7 padding optional) and GCM, via pyca/cryptography."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sscard.crypto.errors import DecryptionError

BLOCK = 16


def _key(key: bytes) -> algorithms.SM4:
    if len(key) != 16:
        raise ValueError(f"SM4 key must be 16 bytes, got {len(key)}")
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


def gcm_encrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    """Returns ciphertext || 16-byte tag."""
    e = Cipher(_key(key), modes.GCM(nonce)).encryptor()
    if aad:
        e.authenticate_additional_data(aad)
    return e.update(data) + e.finalize() + e.tag


def gcm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    if len(data) < 16:
        raise DecryptionError("SM4-GCM: input shorter than the 16-byte tag")
    d = Cipher(_key(key), modes.GCM(nonce, data[-16:])).decryptor()
    if aad:
        d.authenticate_additional_data(aad)
    try:
        return d.update(data[:-16]) + d.finalize()
    except InvalidTag:
        raise DecryptionError("SM4-GCM: authentication tag mismatch") from None
