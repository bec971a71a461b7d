"""Hashes and MACs: SM3 and HMAC-SM3 (GB/T 32905, GM/T 0042) plus the SHA-2 family."""

from __future__ import annotations

import hashlib
import hmac as _hmac

from cryptography.hazmat.primitives import hashes as _h
from cryptography.hazmat.primitives import hmac as _chmac

from sscard.crypto import oids

_BY_NAME: dict[str, type[_h.HashAlgorithm]] = {
    "sm3": _h.SM3,
    "sha256": _h.SHA256,
    "sha384": _h.SHA384,
    "sha512": _h.SHA512,
    "sha1": _h.SHA1,
}
_BY_OID = {oids.SM3: "sm3", oids.SHA256: "sha256", oids.SHA384: "sha384", oids.SHA512: "sha512",
           "1.3.14.3.2.26": "sha1"}
NAME_TO_OID = {v: k for k, v in _BY_OID.items()}


def hash_algorithm(name: str) -> _h.HashAlgorithm:
    try:
        return _BY_NAME[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown hash algorithm {name!r}") from None


def name_for_oid(oid: str) -> str:
    try:
        return _BY_OID[oid]
    except KeyError:
        raise ValueError(f"unknown hash algorithm OID {oid}") from None


def digest(name: str, data: bytes) -> bytes:
    h = _h.Hash(hash_algorithm(name))
    h.update(data)
    return h.finalize()


def sm3_by_cryptography(data: bytes) -> bytes:
    h = _h.Hash(_h.SM3())
    h.update(data)
    return h.finalize()


def _sm3_by_hashlib(data: bytes) -> bytes:
    return hashlib.new("sm3", data).digest()


def _hashlib_has_sm3() -> bool:
    try:
        return _sm3_by_hashlib(b"abc").hex().startswith("66c7f0f4")
    except ValueError:  # Python's OpenSSL built without SM3
        return False


#: SM3 by hashlib where its OpenSSL has it: cryptography fetches the digest from OpenSSL 3's
#: provider on every hash (about 15 us a call, against 3 us), and an SM2 CA hashes each
#: certificate it signs; the same digest either way (tests/crypto compare them)
sm3 = _sm3_by_hashlib if _hashlib_has_sm3() else sm3_by_cryptography


def hmac(name: str, key: bytes, data: bytes) -> bytes:
    m = _chmac.HMAC(key, hash_algorithm(name))
    m.update(data)
    return m.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    return hmac("sm3", key, data)


def hmac_verify(name: str, key: bytes, data: bytes, tag: bytes) -> bool:
    return _hmac.compare_digest(hmac(name, key, data), tag)
