"""Binding to the system's OpenSSL 3 libcrypto for SM2.

pyca/cryptography has SM3 and SM4 but no SM2 curve, and the SM2 bindings on PyPI either lack
the distinguishing-ID and encryption APIs (tongsuopy) or sign several times slower than
OpenSSL (gmssl_pyx, pure-Python gmssl); see docs/crypto-backends.md for the measurements.
So SM2 goes straight to the libcrypto that the ``openssl`` command line itself uses: the same
code, hence the same speed and byte-for-byte interoperability. The binding is cffi in ABI mode
(no compiler needed), kept to the handful of EVP calls that SM2 needs; its declarations are in
_libcrypto_cdef.py, compiled ahead of time into _libcrypto_ffi.py.
"""

from __future__ import annotations

from typing import Any

# compiled ahead of time from _libcrypto_cdef.CDEF: no pycparser at start-up
from sscard.crypto._libcrypto_ffi import ffi


def _open() -> Any:
    # the usual name first: ctypes.util.find_library runs ldconfig in a subprocess
    try:
        return ffi.dlopen("libcrypto.so.3")
    except OSError:
        import ctypes.util

        found = ctypes.util.find_library("crypto")
        if found is None:
            raise
        return ffi.dlopen(found)


lib: Any = _open()

if lib.OpenSSL_version_num() < 0x30000000:
    raise ImportError(
        f"SM2 needs OpenSSL 3 libcrypto; found {ffi.string(lib.OpenSSL_version(0)).decode()}"
    )

EVP_PKEY_KEYPAIR = 0x87  # OSSL_KEYMGMT_SELECT_KEYPAIR | DOMAIN_PARAMETERS
EVP_PKEY_PUBLIC_KEY = 0x86


BIO_CTRL_INFO = 3


def bio_bytes(bio: Any) -> bytes:
    """The contents of a memory BIO."""
    pp = ffi.new("char **")
    n = lib.BIO_ctrl(bio, BIO_CTRL_INFO, 0, pp)
    return bytes(ffi.buffer(pp[0], n))


def version() -> str:
    return str(ffi.string(lib.OpenSSL_version(0)).decode())


def last_error() -> str:
    """Drain OpenSSL's error queue into one message (the newest reason last)."""
    messages = []
    buf = ffi.new("char[256]")
    while True:
        code = lib.ERR_get_error()
        if not code:
            break
        lib.ERR_error_string_n(code, buf, 256)
        messages.append(ffi.string(buf).decode(errors="replace"))
    return "; ".join(messages) or "unknown OpenSSL error"


def openssl_free(ptr: Any) -> None:
    lib.CRYPTO_free(ptr, ffi.NULL, 0)


def pkey_from_pkcs8(der: bytes, error: type[Exception]) -> Any:
    """An owned EVP_PKEY from unencrypted PKCS#8 DER; ``error`` is raised with the reason."""
    buf = ffi.new("unsigned char[]", der)
    pp = ffi.new("const unsigned char **", buf)
    p8 = lib.d2i_PKCS8_PRIV_KEY_INFO(ffi.NULL, pp, len(der))
    if p8 == ffi.NULL:
        raise error(f"not a PKCS#8 private key: {last_error()}")
    try:
        pkey = lib.EVP_PKCS82PKEY(p8)
    finally:
        lib.PKCS8_PRIV_KEY_INFO_free(p8)
    if pkey == ffi.NULL:
        raise error(f"PKCS#8 holds no usable key: {last_error()}")
    return ffi.gc(pkey, lib.EVP_PKEY_free)


def pkcs8_from_pkey(pkey: Any, error: type[Exception]) -> bytes:
    """Unencrypted PKCS#8 DER of an EVP_PKEY, as OpenSSL encodes it."""
    p8 = lib.EVP_PKEY2PKCS8(pkey)
    if p8 == ffi.NULL:
        raise error(f"cannot encode key: {last_error()}")
    try:
        out = ffi.new("unsigned char **")
        n = lib.i2d_PKCS8_PRIV_KEY_INFO(p8, out)
        if n <= 0:
            raise error(f"cannot encode key: {last_error()}")
        der = bytes(ffi.buffer(out[0], n))
        openssl_free(out[0])
        return der
    finally:
        lib.PKCS8_PRIV_KEY_INFO_free(p8)
