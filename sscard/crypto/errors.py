"""Errors raised by the crypto layer. Every message names what was wrong."""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error the crypto layer raises."""


class InvalidKey(CryptoError):
    """Key material that cannot be parsed or does not fit the operation."""


class InvalidSignature(CryptoError):
    """A signature that does not verify, or cannot be parsed."""


class DecryptionError(CryptoError):
    """A ciphertext that cannot be parsed or fails its integrity check."""


class UnsupportedAlgorithm(CryptoError):
    """An algorithm, curve, OID or mechanism that this build does not offer."""


class WrongPassphrase(InvalidKey):
    """An encrypted private key whose passphrase is wrong (or whose file is corrupt)."""
