"""One key-handle interface for software keys, PKCS#11 tokens and the smart card."""

from sscard.keys.base import KeyHandle, KeyHandleError, OperationNotSupported

__all__ = ["KeyHandle", "KeyHandleError", "OperationNotSupported"]
