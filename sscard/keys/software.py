"""Software keys: encrypted PKCS#8 files (PBES2, AES-256-CBC), readable by ``openssl pkey``."""

from __future__ import annotations

import os
from pathlib import Path

from sscard.crypto.algorithms import EncryptionScheme, KeyAlgorithm, SignatureAlgorithm
from sscard.crypto.asymmetric import PrivateKey, PublicKey
from sscard.crypto.sm2 import DEFAULT_UID
from sscard.keys.base import KeyHandle
from sscard.secrets_input import write_private_file


class SoftwareKey(KeyHandle):
    """A private key held in process memory, stored encrypted at rest."""

    def __init__(self, key: PrivateKey, label: str = "") -> None:
        self._key = key
        self._public = key.public_key()
        self.label = label or f"software:{key.algorithm.value}"

    @classmethod
    def generate(cls, algorithm: KeyAlgorithm | str, label: str = "") -> SoftwareKey:
        return cls(PrivateKey.generate(algorithm), label)

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: bytes) -> SoftwareKey:
        data = Path(path).read_bytes()
        return cls(PrivateKey.from_encrypted(data, passphrase), label=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, passphrase: bytes, label: str = "") -> SoftwareKey:
        return cls(PrivateKey.from_encrypted(data, passphrase), label)

    def store(self, path: str | os.PathLike[str], passphrase: bytes, pem: bool = True) -> None:
        """Write encrypted PKCS#8 atomically with mode 0600."""
        write_private_file(path, self._key.encrypted_pkcs8(passphrase, pem=pem))

    @property
    def private_key(self) -> PrivateKey:
        """The in-memory key, for escrow and export paths that need the scalar."""
        return self._key

    @property
    def algorithm(self) -> KeyAlgorithm:
        return self._key.algorithm

    def public_key(self) -> PublicKey:
        return self._public

    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        uid: bytes = DEFAULT_UID,
    ) -> bytes:
        return self._key.sign(data, algorithm, uid)

    def decrypt(self, ciphertext: bytes, scheme: EncryptionScheme | None = None) -> bytes:
        return self._key.decrypt(ciphertext, scheme)
