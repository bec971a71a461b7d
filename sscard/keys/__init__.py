"""One key-handle interface for software keys, PKCS#11 tokens and the smart card."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sscard.keys.base import KeyHandle, KeyHandleError, OperationNotSupported

__all__ = ["KeyHandle", "KeyHandleError", "OperationNotSupported"]


def __getattr__(name: str) -> Any:
    # loaded on first use: sscard.keys.base imports the crypto stack, which `sscard key --help`
    # and `sscard csr --help` (modules of this package) do not need
    if name in __all__:
        from sscard.keys import base

        return getattr(base, name)
    raise AttributeError(f"module 'sscard.keys' has no attribute {name!r}")
