"""The storage key inside a PKCS#11 token (SoftHSM2 in tests): generated there, never extractable.

Token work goes through the project's ``sscard.keys.pkcs11`` (``Pkcs11Token`` sessions and
``Pkcs11SecretKey`` AES-GCM on the token). The token's user PIN is the secret the custodians
protect: the ceremony replaces the PIN the administrator initialised the token with by a random
one that exists only sealed under the custodians' key-encryption secret, so no single person can
use the storage key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from keymgmt.errors import CeremonyError, StorageKeyError
from keymgmt.storage import TAG_LEN, WRAP_VERSION, StorageKey
from sscard.crypto.errors import CryptoError, DecryptionError
from sscard.keys.pkcs11 import KeyNotFound, Pkcs11Error, Pkcs11Token

DEFAULT_KEY_LABEL = "sscard-kmc-storage"


@dataclass(frozen=True)
class TokenRef:
    """Where the storage key lives: the PKCS#11 module and the token label."""

    module: str
    token_label: str
    key_label: str = DEFAULT_KEY_LABEL


def _open(ref: TokenRef, pin: bytes) -> Pkcs11Token:
    try:
        return Pkcs11Token(ref.token_label, pin, ref.module)
    except CryptoError as exc:
        raise StorageKeyError(f"cannot open the storage key's token: {exc}") from None


def check_target(ref: TokenRef, admin_pin: bytes) -> None:
    """Before a ceremony writes anything: the token opens with this PIN and has no storage key."""
    token = _open(ref, admin_pin)
    try:
        token.find_secret_key(ref.key_label)
    except KeyNotFound:
        return
    except Pkcs11Error as exc:
        raise StorageKeyError(f"cannot inspect the token: {exc}") from None
    finally:
        token.close()
    raise CeremonyError(
        f"token {ref.token_label!r} already holds a key labelled {ref.key_label!r}; "
        "a ceremony never overwrites a storage key"
    )


def generate_storage_key(ref: TokenRef, admin_pin: bytes) -> bytes:
    """Generate the AES-256 storage key in the token, then replace the administrator's PIN by
    a random one; return that new PIN (for the caller to seal, and to forget)."""
    new_pin = secrets.token_hex(16).encode()
    token = _open(ref, admin_pin)
    try:
        try:
            token.find_secret_key(ref.key_label)
        except KeyNotFound:
            pass
        else:
            raise CeremonyError(
                f"token {ref.token_label!r} already holds a key labelled {ref.key_label!r}; "
                "a ceremony never overwrites a storage key"
            )
        try:
            key = token.generate_aes_key(ref.key_label, 256, extractable=False)
            if key.extractable or not key.sensitive:
                raise CeremonyError("the token made the storage key extractable; refusing it")

            def set_pin(session: Any) -> None:
                session.set_pin(admin_pin.decode(), new_pin.decode())

            token.run(set_pin)
        except Pkcs11Error as exc:
            raise StorageKeyError(f"cannot create the storage key: {exc}") from None
    finally:
        token.close()
    return new_pin


class HsmStorageKey(StorageKey):
    """AES-256-GCM by a non-extractable key in a PKCS#11 token."""

    def __init__(self, ref: TokenRef, pin: bytes, key_id: str) -> None:
        self.ref = ref
        self.key_id = key_id
        self._token = _open(ref, pin)
        try:
            self._key = self._token.find_secret_key(ref.key_label)
            extractable = self._key.extractable
        except Pkcs11Error as exc:
            self._token.close()
            raise StorageKeyError(f"storage key not usable: {exc}") from None
        if extractable:
            self._token.close()
            raise StorageKeyError("the storage key in the token is extractable; refusing it")

    @property
    def secret_key(self) -> Any:
        """The token key object (for tests and diagnostics: its attributes, never its value)."""
        return self._key

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        try:
            return WRAP_VERSION + self._key.encrypt(plaintext, aad)
        except Pkcs11Error as exc:
            raise StorageKeyError(f"HSM storage key could not wrap: {exc}") from None

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        if len(wrapped) < 1 + 12 + TAG_LEN or wrapped[:1] != WRAP_VERSION:
            raise StorageKeyError("wrapped value is truncated or of an unknown format")
        try:
            return self._key.decrypt(wrapped[1:], aad)
        except DecryptionError:
            raise StorageKeyError(
                "archive record does not unwrap under the HSM storage key (altered, moved to "
                "another record, or sealed under another storage key)"
            ) from None
        except Pkcs11Error as exc:
            raise StorageKeyError(f"HSM storage key could not unwrap: {exc}") from None

    def close(self) -> None:
        self._token.close()
