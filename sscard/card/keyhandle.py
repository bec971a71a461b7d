"""The card as a key handle: SM2 signatures computed by the card's on-card key.

The card signs a digest (PSO COMPUTE DIGITAL SIGNATURE over e = SM3(Z || M)), so the handle
computes Z from the card's public key and the user ID, hashes, and sends e. The PKI PIN is
verified on first use (from the ``pin`` callable, so the handle never stores more than the
caller gave it)."""

from __future__ import annotations

from collections.abc import Callable

from sscard.card.client import ENC_PUB, SIGN_PUB, CardClient
from sscard.card.errors import SecurityStatusNotSatisfied
from sscard.crypto.algorithms import EncryptionScheme, KeyAlgorithm, SignatureAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.sm2 import (
    DEFAULT_UID,
    SM2PublicKey,
    SM2Signature,
    asn1_to_c1c3c2,
    signature_digest,
)
from sscard.keys.base import KeyHandle, OperationNotSupported


def der_signature(raw: bytes) -> bytes:
    """r || s (64 bytes) -> DER SEQUENCE {r, s}."""
    return SM2Signature(
        {"r": int.from_bytes(raw[:32], "big"), "s": int.from_bytes(raw[32:], "big")}
    ).dump()


class CardKey(KeyHandle):
    """The card's signing key (or, with ``which="enc"``, its encryption key for decrypt)."""

    def __init__(self, client: CardClient, pin: Callable[[], str], which: str = "sign") -> None:
        if which not in ("sign", "enc"):
            raise ValueError("which must be 'sign' or 'enc'")
        self.client = client
        self._pin = pin
        self._which = which
        self._point: bytes | None = None
        self._pin_verified = False
        self.label = f"card:{client.transport.name}:{which}"

    @property
    def algorithm(self) -> KeyAlgorithm:
        return KeyAlgorithm.SM2

    def point(self) -> bytes:
        if self._point is None:
            self._point = self.client.public_point(SIGN_PUB if self._which == "sign" else ENC_PUB)
        return self._point

    def public_key(self) -> PublicKey:
        return PublicKey(SM2PublicKey.from_point(self.point()))

    def _login(self) -> None:
        if not self._pin_verified:
            self.client.verify_pki_pin(self._pin())
            self._pin_verified = True
        else:
            self.client.select_pki()

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None,
             uid: bytes = DEFAULT_UID) -> bytes:
        if algorithm not in (None, SignatureAlgorithm.SM2_SM3):
            raise OperationNotSupported(f"{self.label} signs with SM2-with-SM3 only, "
                                        f"not {algorithm.value}")
        if self._which != "sign":
            raise OperationNotSupported(f"{self.label} is the encryption key; it does not sign")
        e = signature_digest(self.point(), data, uid)
        return der_signature(self._with_login(lambda: self.client.sign_digest(e)))

    def decrypt(self, ciphertext: bytes, scheme: EncryptionScheme | None = None) -> bytes:
        if self._which != "enc":
            raise OperationNotSupported(f"{self.label} is the signing key; it does not decrypt")
        if scheme in (None, EncryptionScheme.SM2):
            ciphertext = asn1_to_c1c3c2(ciphertext)
        elif scheme is not EncryptionScheme.SM2_C1C3C2:
            raise OperationNotSupported(f"{self.label} decrypts SM2 only")
        return self._with_login(lambda: self.client.decipher(ciphertext))

    def _with_login(self, operation: Callable[[], bytes]) -> bytes:
        """Run a PIN-protected operation; if the card forgot the PIN (it was reset, or another
        application selected something else), verify again once."""
        self._login()
        try:
            return operation()
        except SecurityStatusNotSatisfied:
            self._pin_verified = False
            self._login()
            return operation()

