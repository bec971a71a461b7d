"""One key-handle interface for software keys, PKCS#11 tokens and the smart card.

Each name is loaded from its module when first used (PEP 562): sscard.keys.base imports the
crypto stack, which `sscard key --help` and `sscard csr --help` (modules of this package) do
not need."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sscard.lazy import lazy_exports

if TYPE_CHECKING:
    from sscard.keys.base import KeyHandle, KeyHandleError, OperationNotSupported

#: each public name and the module that defines it
_WHERE = dict.fromkeys(("KeyHandle", "KeyHandleError", "OperationNotSupported"), "base")

__all__ = ["KeyHandle", "KeyHandleError", "OperationNotSupported"]

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
