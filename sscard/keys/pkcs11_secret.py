"""AES keys held on a PKCS#11 token: the KMC's storage key.

``Pkcs11SecretKey.encrypt/decrypt`` run AES-GCM on the token (``nonce || ciphertext || tag``, a
fresh 96-bit nonce per call, optional associated data), so the key never leaves the HSM.
``wrap/unwrap`` are the same with a fixed context label, for key material the KMC escrows.
``wrap_token_key/unwrap_aes_key`` move token keys with CKM_AES_KEY_WRAP_PAD.

python-pkcs11's ``GCMParams`` is laid out differently from SoftHSM2's CK_GCM_PARAMS (the token
answers CKR_ARGUMENTS_BAD), so we pass the structure as raw bytes built with ctypes; the
PKCS#11 2.40 errata layout (with ulIvBits) is the one SoftHSM2 and most HSMs expect.
"""

from __future__ import annotations

import ctypes
import secrets
from typing import TYPE_CHECKING, Any

from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11exc

from sscard.crypto.errors import DecryptionError
from sscard.keys.pkcs11 import DuplicateKey, KeyNotFound, Pkcs11Error, Pkcs11Key

if TYPE_CHECKING:
    from sscard.keys.pkcs11 import Pkcs11Token

NONCE_BYTES = 12
TAG_BYTES = 16
WRAP_CONTEXT = b"sscard-pkcs11-wrap-v1"
_AES_BITS = (128, 192, 256)


class _GcmParams(ctypes.Structure):
    _fields_ = (
        ("pIv", ctypes.c_void_p),
        ("ulIvLen", ctypes.c_ulong),
        ("ulIvBits", ctypes.c_ulong),
        ("pAAD", ctypes.c_void_p),
        ("ulAADLen", ctypes.c_ulong),
        ("ulTagBits", ctypes.c_ulong),
    )


class _GcmParamBytes:
    """CK_GCM_PARAMS as bytes, keeping the IV and AAD buffers it points to alive."""

    def __init__(self, nonce: bytes, aad: bytes) -> None:
        self._iv = ctypes.create_string_buffer(nonce, len(nonce))
        self._aad = ctypes.create_string_buffer(aad, max(len(aad), 1))
        params = _GcmParams(
            ctypes.cast(self._iv, ctypes.c_void_p),
            len(nonce),
            len(nonce) * 8,
            ctypes.cast(self._aad, ctypes.c_void_p) if aad else None,
            len(aad),
            TAG_BYTES * 8,
        )
        self.raw = bytes(params)


class Pkcs11SecretKey:
    """An AES key on a token, used by label; the key value stays on the token."""

    def __init__(self, token: Pkcs11Token, label: str, key_id: bytes, bits: int) -> None:
        self.token = token
        self.key_label = label
        self.key_id = key_id
        self.bits = bits
        self._object: Any = None
        self._generation = -1

    def __repr__(self) -> str:
        return f"Pkcs11SecretKey({self.key_label!r}, aes{self.bits})"

    def _secret(self, session: Any) -> Any:
        if self._object is None or self._generation != self.token.generation:
            found = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                              Attribute.LABEL: self.key_label,
                                              Attribute.ID: self.key_id}))
            if not found:
                raise KeyNotFound(
                    f"secret key {self.key_label!r} is no longer on token"
                    f" {self.token.token_label!r}"
                )
            self._object = found[0]
            self._generation = self.token.generation
        return self._object

    @property
    def extractable(self) -> bool:
        return bool(self.token.run(lambda s: self._secret(s)[Attribute.EXTRACTABLE]))

    @property
    def sensitive(self) -> bool:
        return bool(self.token.run(lambda s: self._secret(s)[Attribute.SENSITIVE]))

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """AES-GCM on the token: ``nonce || ciphertext || tag``."""
        self.token.require_mechanism(Mechanism.AES_GCM, "AES-GCM encryption")
        nonce = secrets.token_bytes(NONCE_BYTES)
        params = _GcmParamBytes(nonce, aad)

        def encrypt(session: Any) -> bytes:
            return bytes(self._secret(session).encrypt(
                plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params.raw
            ))

        sealed = self.token._call(encrypt, f"AES-GCM encryption with {self.key_label!r}")
        return nonce + sealed

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        """Open what ``encrypt`` sealed; a wrong key, AAD or any changed byte is refused."""
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError(
                f"AES-GCM blob of {len(blob)} bytes is too short"
                f" (nonce {NONCE_BYTES} + tag {TAG_BYTES} bytes at least)"
            )
        self.token.require_mechanism(Mechanism.AES_GCM, "AES-GCM decryption")
        params = _GcmParamBytes(blob[:NONCE_BYTES], aad)

        def decrypt(session: Any) -> bytes:
            return bytes(self._secret(session).decrypt(
                blob[NONCE_BYTES:], mechanism=Mechanism.AES_GCM, mechanism_param=params.raw
            ))

        try:
            return self.token.run(decrypt)
        except (p11exc.EncryptedDataInvalid, p11exc.EncryptedDataLenRange,
                p11exc.FunctionFailed, p11exc.GeneralError):
            # SoftHSM2 reports a failed GCM tag check as CKR_GENERAL_ERROR
            raise DecryptionError(
                f"AES-GCM decryption with {self.key_label!r} failed: wrong key, wrong associated"
                " data or corrupt ciphertext"
            ) from None
        except p11exc.PKCS11Error as exc:
            raise Pkcs11Error(
                f"AES-GCM decryption with {self.key_label!r} on token"
                f" {self.token.token_label!r} failed: {str(exc) or type(exc).__name__}"
            ) from None

    def wrap(self, key_material: bytes, context: bytes = b"") -> bytes:
        """Seal key material (a private scalar, a PKCS#8 blob) under this key for escrow.

        ``context`` (the escrow record's id, say) is bound in as associated data, so a blob
        copied to another record does not open there.
        """
        if not key_material:
            raise ValueError("nothing to wrap: key material is empty")
        return self.encrypt(key_material, WRAP_CONTEXT + b"\0" + context)

    def unwrap(self, blob: bytes, context: bytes = b"") -> bytes:
        return self.decrypt(blob, WRAP_CONTEXT + b"\0" + context)

    def wrap_token_key(self, key: Pkcs11SecretKey | Pkcs11Key) -> bytes:
        """CKM_AES_KEY_WRAP_PAD of another key on the token; that key must be extractable."""
        self.token.require_mechanism(Mechanism.AES_KEY_WRAP_PAD, "key wrapping")

        def wrap(session: Any) -> bytes:
            target = key._secret(session) if isinstance(key, Pkcs11SecretKey) else (
                key._private(session))
            return bytes(self._secret(session).wrap_key(
                target, mechanism=Mechanism.AES_KEY_WRAP_PAD
            ))

        try:
            return self.token.run(wrap)
        except p11exc.KeyUnextractable:
            raise Pkcs11Error(
                f"key {key.key_label!r} is not extractable: the token will not wrap it"
            ) from None
        except p11exc.PKCS11Error as exc:
            raise Pkcs11Error(
                f"wrapping {key.key_label!r} under {self.key_label!r} failed:"
                f" {str(exc) or type(exc).__name__}"
            ) from None

    def unwrap_aes_key(
        self, wrapped: bytes, label: str, bits: int = 256, extractable: bool = False
    ) -> Pkcs11SecretKey:
        """Unwrap what ``wrap_token_key`` made of an AES key into a new token key ``label``."""
        _check_bits(bits)
        self.token.require_mechanism(Mechanism.AES_KEY_WRAP_PAD, "key unwrapping")
        key_id = secrets.token_bytes(16)

        def unwrap(session: Any) -> None:
            self.token._check_free(session, label, key_id)
            self._secret(session).unwrap_key(
                ObjectClass.SECRET_KEY, KeyType.AES, wrapped,
                id=key_id, label=label, store=True,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT
                | MechanismFlag.WRAP | MechanismFlag.UNWRAP,
                template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: extractable},
            )

        try:
            self.token.run(unwrap)
        except (p11exc.WrappedKeyInvalid, p11exc.WrappedKeyLenRange,
                p11exc.EncryptedDataInvalid):
            raise DecryptionError(
                f"cannot unwrap into {label!r} with {self.key_label!r}: wrong wrapping key or"
                " corrupt wrapped key"
            ) from None
        except p11exc.PKCS11Error as exc:
            raise Pkcs11Error(
                f"unwrapping into {label!r} with {self.key_label!r} failed:"
                f" {str(exc) or type(exc).__name__}"
            ) from None
        return Pkcs11SecretKey(self.token, label, key_id, bits)


def _check_bits(bits: int) -> None:
    if bits not in _AES_BITS:
        raise ValueError(f"AES keys are 128, 192 or 256 bits, not {bits}")


def generate_aes_key(
    token: Pkcs11Token, label: str, bits: int = 256, extractable: bool = False
) -> Pkcs11SecretKey:
    _check_bits(bits)
    if not label:
        raise ValueError("a PKCS#11 key needs a label")
    token.require_mechanism(Mechanism.AES_KEY_GEN, "AES key generation")
    key_id = secrets.token_bytes(16)

    def generate(session: Any) -> None:
        token._check_free(session, label, key_id)
        session.generate_key(
            KeyType.AES, bits, id=key_id, label=label, store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT
            | MechanismFlag.WRAP | MechanismFlag.UNWRAP,
            template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: extractable,
                      Attribute.PRIVATE: True},
        )

    token._call(generate, f"generating AES-{bits} key {label!r}")
    return Pkcs11SecretKey(token, label, key_id, bits)


def find_secret_key(token: Pkcs11Token, label: str) -> Pkcs11SecretKey:
    def find(session: Any) -> Pkcs11SecretKey:
        found = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                          Attribute.LABEL: label}))
        if not found:
            raise KeyNotFound(f"no secret key labelled {label!r} on token {token.token_label!r}")
        if len(found) > 1:
            raise DuplicateKey(
                f"{len(found)} secret keys are labelled {label!r} on token {token.token_label!r}"
            )
        obj = found[0]
        if obj[Attribute.KEY_TYPE] != KeyType.AES:
            raise Pkcs11Error(
                f"secret key {label!r} on token {token.token_label!r} is"
                f" {KeyType(obj[Attribute.KEY_TYPE]).name}, not AES"
            )
        return Pkcs11SecretKey(token, label, bytes(obj[Attribute.ID]),
                               int(obj[Attribute.VALUE_LEN]) * 8)

    return token._call(find, f"finding secret key {label!r}")
