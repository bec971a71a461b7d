"""The key-handle interface: everything that signs or decrypts goes through it.

A handle knows its algorithm and public key and can sign (and, where the key allows, decrypt).
The private key may be in memory (software), in an HSM (PKCS#11) or on a card; callers cannot
tell and need not care. Modelled on pyHanko's ``Signer``: one abstract primitive, many backends.
"""

from __future__ import annotations

import abc

from sscard.crypto.algorithms import EncryptionScheme, KeyAlgorithm, SignatureAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError
from sscard.crypto.sm2 import DEFAULT_UID

#: the PKCS#11 module used when none is named (SoftHSM2, the test rig's HSM); here rather than
#: in sscard.keys.pkcs11 so that naming it needs no python-pkcs11 (the [hsm] extra)
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class KeyHandleError(CryptoError):
    """A key handle could not do what was asked (token gone, key missing, ...)."""


class OperationNotSupported(KeyHandleError):
    """The key or its backend lacks the operation or mechanism (e.g. SM2 on SoftHSM2)."""


class KeyHandle(abc.ABC):
    """A private key somewhere, usable through sign() and decrypt()."""

    #: a short human-readable name: a file path, "pkcs11:label=...", "card:..."
    label: str = ""

    @property
    @abc.abstractmethod
    def algorithm(self) -> KeyAlgorithm: ...

    @abc.abstractmethod
    def public_key(self) -> PublicKey: ...

    @abc.abstractmethod
    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        uid: bytes = DEFAULT_UID,
    ) -> bytes:
        """Sign ``data`` (the whole message: the handle hashes as the algorithm requires).

        Signatures are DER ``SEQUENCE {r, s}`` for SM2 and ECDSA, as X.509 and CMS carry them.
        ``uid`` is the SM2 distinguishing ID and is ignored by other algorithms.
        """

    def decrypt(self, ciphertext: bytes, scheme: EncryptionScheme | None = None) -> bytes:
        raise OperationNotSupported(f"{self.label or type(self).__name__} cannot decrypt")

    @property
    def default_signature_algorithm(self) -> SignatureAlgorithm:
        return self.algorithm.default_signature

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r}, {self.algorithm.value})"
