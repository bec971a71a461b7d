"""asn1crypto's change check, with the same answers at less cost.

Each ``dump()`` of a SEQUENCE or SEQUENCE OF first asks ``_is_mutated()`` whether it or any
parsed part of it has been changed since it was parsed (a changed value is re-encoded). The
check walks every parsed SEQUENCE and SEQUENCE OF below the value; asn1crypto 1.5.1 keeps
walking after a change is found and tests each child's type twice, and a path validation's
dumps of the same certificates made this walk a tenth of its time. Here the walk stops at
the first change and tests each child once. It visits the same values (children parsed so
far, SEQUENCE and SEQUENCE OF only, as asn1crypto does) and answers the same.

A SEQUENCE that its holder will never change (:func:`never_changed`: the validator's kept
private copies, read by every validation and handed to no one) is not walked at all: its
``dump()`` gives the octets it was parsed from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asn1crypto import core

_WALKED = (core.Sequence, core.SequenceOf)


def _is_mutated(self: Any) -> bool:
    if self._mutated:
        return True
    children = self.children
    if children is None:
        return False
    for child in children:
        if isinstance(child, _WALKED) and child._is_mutated():
            return True
    return False


_is_mutated.__doc__ = core.Sequence._is_mutated.__doc__


_NEVER_CHANGED = "_sscard_never_changed"


def never_changed(value: core.Asn1Value) -> None:
    """Declare that ``value`` (parsed from DER, unchanged so far) will never be changed, by
    its holder or anyone it is handed to: its ``dump()`` then skips the change check. A copy
    of it (``copy()``) is an ordinary value."""
    if (
        isinstance(value, core.Sequence)
        and value.explicit is None
        and not value.implicit
        and value._header is not None
        and value._header[-1:] != b"\x80"  # lengths.py's case: left to its dump()
        and not value._is_mutated()
    ):
        setattr(value, _NEVER_CHANGED, True)


def is_never_changed(value: core.Asn1Value) -> bool:
    """Whether ``value`` was declared by :func:`never_changed` (not to be handed to anyone
    who might change it)."""
    return bool(value.__dict__.get(_NEVER_CHANGED))


def _unless_never_changed(dump: Callable[..., bytes]) -> Callable[..., bytes]:
    def dump_unless_never_changed(self: Any, force: bool = False) -> bytes:
        if not force and self.__dict__.get(_NEVER_CHANGED):
            return bytes(self._header + self._contents)
        return dump(self, force)

    dump_unless_never_changed.__doc__ = dump.__doc__
    dump_unless_never_changed.__wrapped__ = dump  # type: ignore[attr-defined]
    return dump_unless_never_changed


def check_changes_faster() -> None:
    """Give SEQUENCE and SEQUENCE OF the quicker walk, and SEQUENCE the dump of a value that
    is never changed (once)."""
    for cls in _WALKED:
        if cls.__dict__.get("_is_mutated") is not _is_mutated:
            cls._is_mutated = _is_mutated
    if core.Sequence.dump.__name__ != "dump_unless_never_changed":
        core.Sequence.dump = _unless_never_changed(core.Sequence.dump)
