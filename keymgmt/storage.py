"""The KMC storage (wrapping) key: authenticated encryption of everything the KMC archives.

Two backends behind one small interface:

* :class:`SoftwareStorageKey`: a random 256-bit AES key that exists in clear only in the memory
  of an unsealed KMC; at rest it is sealed under the custodians' key-encryption secret.
* :class:`keymgmt.hsm.HsmStorageKey`: a non-extractable AES-256 key generated inside a PKCS#11
  token; the custodians' secret protects the token PIN instead.

Both use AES-256-GCM with a fresh 96-bit nonce and the caller's associated data (key id and owner
for escrowed keys), so a wrapped record moved to another row fails to unwrap. A wrapped value is
``b"\\x01" || nonce(12) || ciphertext || tag(16)``.
"""

from __future__ import annotations

import abc
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keymgmt.errors import StorageKeyError

WRAP_VERSION = b"\x01"
NONCE_LEN = 12
TAG_LEN = 16


def split_wrapped(blob: bytes) -> tuple[bytes, bytes]:
    """(nonce, ciphertext||tag) of a wrapped value, checking its framing."""
    if len(blob) < 1 + NONCE_LEN + TAG_LEN or blob[:1] != WRAP_VERSION:
        raise StorageKeyError("wrapped value is truncated or of an unknown format")
    return blob[1:1 + NONCE_LEN], blob[1 + NONCE_LEN:]


class StorageKey(abc.ABC):
    """Wraps and unwraps archive records; the key itself never leaves."""

    #: a stable public identifier recorded beside every wrapped value
    key_id: str

    @abc.abstractmethod
    def wrap(self, plaintext: bytes, aad: bytes) -> bytes: ...

    @abc.abstractmethod
    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes: ...

    def close(self) -> None:
        """Release the backend (HSM session); the software key forgets nothing here."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key_id!r})"


class SoftwareStorageKey(StorageKey):
    """AES-256-GCM with the key in process memory (embedded deployment)."""

    def __init__(self, key: bytes, key_id: str) -> None:
        if len(key) != 32:
            raise StorageKeyError("the software storage key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)
        self.key_id = key_id

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_LEN)
        return WRAP_VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        nonce, body = split_wrapped(wrapped)
        try:
            return self._aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise StorageKeyError(
                "archive record does not unwrap under the storage key (altered, moved to "
                "another record, or sealed under another storage key)"
            ) from None
