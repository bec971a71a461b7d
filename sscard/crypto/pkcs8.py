"""Encrypted PKCS#8 (PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC) for every key algorithm.

Written and read by OpenSSL's own PKCS#8 code through libcrypto, so what we write
``openssl pkey -passin`` reads, and what OpenSSL writes we read, SM2 included (pyca/cryptography
cannot parse SM2 keys, so it cannot be the one path for all algorithms).
"""

from __future__ import annotations

from asn1crypto.keys import EncryptedPrivateKeyInfo

from sscard.crypto._libcrypto import (
    bio_bytes,
    ffi,
    last_error,
    lib,
    pkcs8_from_pkey,
    pkey_from_pkcs8,
)
from sscard.crypto.errors import InvalidKey, WrongPassphrase

PEM_ENCRYPTED = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


def _is_encrypted(data: bytes) -> bool:
    if data.lstrip().startswith(PEM_ENCRYPTED):
        return True
    try:
        algorithm = EncryptedPrivateKeyInfo.load(data, strict=True)["encryption_algorithm"]
        return bool(algorithm["algorithm"].dotted)
    except (ValueError, TypeError, KeyError):
        return False


def encrypt(pkcs8_der: bytes, passphrase: bytes, pem: bool = True) -> bytes:
    """Encrypt an unencrypted PKCS#8 DER under ``passphrase``; PEM or DER output."""
    if not passphrase:
        raise ValueError("an empty passphrase would leave the private key unprotected")
    pkey = pkey_from_pkcs8(pkcs8_der, InvalidKey)
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
        # A wrong passphrase usually fails the CBC padding check, but about one time in 256 the
        # padding happens to look right and the garbage fails to parse instead: for encrypted
        # input both mean the same thing to the user.
        if "decrypt" in reason.lower() or _is_encrypted(data):
            raise WrongPassphrase("wrong passphrase for the private key (or the file is corrupt)")
        raise InvalidKey(f"not a readable private key: {reason}")
    return pkcs8_from_pkey(ffi.gc(pkey, lib.EVP_PKEY_free), InvalidKey)
