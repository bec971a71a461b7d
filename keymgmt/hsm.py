"""The storage key inside a PKCS#11 token (SoftHSM2 in tests): generated there, never extractable.

python-pkcs11 does the token work directly: the shared ``sscard.keys.pkcs11`` handle covers
signing keys; the KMC needs only AES key generation, AES-GCM and a PIN change, kept here.
The token's user PIN is the secret the custodians protect: the ceremony replaces the PIN the
administrator initialised the token with by a random one that exists only sealed under the
custodians' key-encryption secret, so no single person can use the storage key.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.mechanisms import GCMParams

from keymgmt.errors import CeremonyError, StorageKeyError
from keymgmt.storage import NONCE_LEN, WRAP_VERSION, StorageKey, split_wrapped

DEFAULT_KEY_LABEL = "sscard-kmc-storage"


@dataclass(frozen=True)
class TokenRef:
    """Where the storage key lives: the PKCS#11 module and the token label."""

    module: str
    token_label: str
    key_label: str = DEFAULT_KEY_LABEL


def _token(ref: TokenRef) -> Any:
    try:
        lib = pkcs11.lib(ref.module)
    except RuntimeError as exc:  # python-pkcs11 raises this for an unloadable module
        raise StorageKeyError(f"cannot load PKCS#11 module {ref.module}: {exc}") from None
    try:
        return lib.get_token(token_label=ref.token_label)
    except pkcs11.NoSuchToken:
        raise StorageKeyError(f"no PKCS#11 token labelled {ref.token_label!r}") from None


def _open(ref: TokenRef, pin: bytes, rw: bool = False) -> Any:
    try:
        return _token(ref).open(rw=rw, user_pin=pin.decode())
    except pkcs11.PinIncorrect:
        raise StorageKeyError(f"wrong user PIN for token {ref.token_label!r}") from None
    except pkcs11.PinLocked:
        raise StorageKeyError(f"the user PIN of token {ref.token_label!r} is locked") from None


def generate_storage_key(ref: TokenRef, admin_pin: bytes) -> bytes:
    """Generate the AES-256 storage key in the token, then replace the administrator's PIN by
    a random one; return that new PIN (for the caller to seal, and to forget)."""
    new_pin = secrets.token_hex(16).encode()
    with _open(ref, admin_pin, rw=True) as session:
        existing = list(session.get_objects({Attribute.LABEL: ref.key_label,
                                             Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY}))
        if existing:
            raise CeremonyError(
                f"token {ref.token_label!r} already holds a key labelled {ref.key_label!r}; "
                "a ceremony never overwrites a storage key"
            )
        session.generate_key(
            KeyType.AES, 256, label=ref.key_label, store=True,
            template={
                Attribute.EXTRACTABLE: False,
                Attribute.SENSITIVE: True,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
                Attribute.WRAP: False,
                Attribute.UNWRAP: False,
            },
        )
        session.set_pin(admin_pin.decode(), new_pin.decode())
    return new_pin


class HsmStorageKey(StorageKey):
    """AES-256-GCM by a non-extractable key in a PKCS#11 token; one session, serialised."""

    def __init__(self, ref: TokenRef, pin: bytes, key_id: str) -> None:
        self.ref = ref
        self.key_id = key_id
        self._lock = threading.Lock()
        self._session = _open(ref, pin)
        try:
            self._key = self._session.get_key(
                label=ref.key_label, key_type=KeyType.AES,
                object_class=pkcs11.ObjectClass.SECRET_KEY,
            )
        except pkcs11.NoSuchKey:
            self._session.close()
            raise StorageKeyError(
                f"token {ref.token_label!r} holds no AES key labelled {ref.key_label!r}"
            ) from None
        if self._key[Attribute.EXTRACTABLE]:
            self._session.close()
            raise StorageKeyError("the storage key in the token is extractable; refusing it")

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_LEN)
        with self._lock:
            body = self._key.encrypt(plaintext, mechanism=Mechanism.AES_GCM,
                                     mechanism_param=GCMParams(nonce, aad, 128))
        return WRAP_VERSION + nonce + bytes(body)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        nonce, body = split_wrapped(wrapped)
        try:
            with self._lock:
                return bytes(self._key.decrypt(body, mechanism=Mechanism.AES_GCM,
                                               mechanism_param=GCMParams(nonce, aad, 128)))
        except pkcs11.PKCS11Error:
            raise StorageKeyError(
                "archive record does not unwrap under the HSM storage key (altered, moved to "
                "another record, or sealed under another storage key)"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._session.close()
