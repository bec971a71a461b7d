"""Encrypted PKCS#8 (PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC) for every key algorithm.

Written and read by OpenSSL's own PKCS#8 code through libcrypto, so what we write
``openssl pkey -passin`` reads, and what OpenSSL writes we read, SM2 included (pyca/cryptography
cannot parse SM2 keys, so it cannot be the one path for all algorithms).
"""

from __future__ import annotations

from typing import Any

from sscard.crypto._libcrypto import bio_bytes, ffi, last_error, lib
from sscard.crypto.errors import InvalidKey, WrongPassphrase

PEM_ENCRYPTED = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


def _pkey_from_pkcs8(der: bytes) -> Any:
    buf = ffi.new("unsigned char[]", der)
    pp = ffi.new("const unsigned char **", buf)
    p8 = lib.d2i_PKCS8_PRIV_KEY_INFO(ffi.NULL, pp, len(der))
    if p8 == ffi.NULL:
        raise InvalidKey(f"not a PKCS#8 private key: {last_error()}")
    try:
        pkey = lib.EVP_PKCS82PKEY(p8)
    finally:
        lib.PKCS8_PRIV_KEY_INFO_free(p8)
    if pkey == ffi.NULL:
        raise InvalidKey(f"PKCS#8 holds no usable key: {last_error()}")
    return ffi.gc(pkey, lib.EVP_PKEY_free)


def _pkcs8_from_pkey(pkey: Any) -> bytes:
    p8 = lib.EVP_PKEY2PKCS8(pkey)
    if p8 == ffi.NULL:
        raise InvalidKey(f"cannot encode key: {last_error()}")
    try:
        out = ffi.new("unsigned char **")
        n = lib.i2d_PKCS8_PRIV_KEY_INFO(p8, out)
        if n <= 0:
            raise InvalidKey(f"cannot encode key: {last_error()}")
        der = bytes(ffi.buffer(out[0], n))
        lib.CRYPTO_free(out[0], ffi.NULL, 0)
        return der
    finally:
        lib.PKCS8_PRIV_KEY_INFO_free(p8)


def encrypt(pkcs8_der: bytes, passphrase: bytes, pem: bool = True) -> bytes:
    """Encrypt an unencrypted PKCS#8 DER under ``passphrase``; PEM or DER output."""
    if not passphrase:
        raise ValueError("an empty passphrase would leave the private key unprotected")
    pkey = _pkey_from_pkcs8(pkcs8_der)
    bio = ffi.gc(lib.BIO_new(lib.BIO_s_mem()), lib.BIO_free)
    write = lib.PEM_write_bio_PKCS8PrivateKey if pem else lib.i2d_PKCS8PrivateKey_bio
    if write(bio, pkey, lib.EVP_aes_256_cbc(), passphrase, len(passphrase), ffi.NULL,
             ffi.NULL) != 1:
        raise InvalidKey(f"cannot encrypt private key: {last_error()}")
    return bio_bytes(bio)


def decrypt(data: bytes, passphrase: bytes | None) -> bytes:
    """Decrypt an encrypted PKCS#8 (PEM or DER) and return the unencrypted PKCS#8 DER.

    An unencrypted PEM "PRIVATE KEY" is accepted too, for keys that OpenSSL or an HSM export
    wrote; callers decide whether to allow that.
    """
    bio = ffi.gc(lib.BIO_new_mem_buf(data, len(data)), lib.BIO_free)
    pw = ffi.new("char[]", passphrase or b"")
    lib.ERR_clear_error()
    if data.lstrip().startswith(b"-----BEGIN"):
        pkey = lib.PEM_read_bio_PrivateKey(bio, ffi.NULL, ffi.NULL, pw)
    else:
        pkey = lib.d2i_PKCS8PrivateKey_bio(bio, ffi.NULL, ffi.NULL, pw)
    if pkey == ffi.NULL:
        reason = last_error()
        if "bad decrypt" in reason or "decrypt" in reason.lower():
            raise WrongPassphrase("wrong passphrase for the private key (or the file is corrupt)")
        raise InvalidKey(f"not a readable private key: {reason}")
    return _pkcs8_from_pkey(ffi.gc(pkey, lib.EVP_PKEY_free))
