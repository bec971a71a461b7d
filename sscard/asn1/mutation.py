"""asn1crypto's change check, with the same answers at less cost.

Each ``dump()`` of a SEQUENCE or SEQUENCE OF first asks ``_is_mutated()`` whether it or any
parsed part of it has been changed since it was parsed (a changed value is re-encoded). The
check walks every parsed SEQUENCE and SEQUENCE OF below the value; asn1crypto 1.5.1 keeps
walking after a change is found and tests each child's type twice, and a path validation's
dumps of the same certificates made this walk a tenth of its time. Here the walk stops at
the first change and tests each child once. It visits the same values (children parsed so
far, SEQUENCE and SEQUENCE OF only, as asn1crypto does) and answers the same.
"""

from __future__ import annotations

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


def check_changes_faster() -> None:
    """Give SEQUENCE and SEQUENCE OF the quicker walk (once)."""
    for cls in _WALKED:
        if cls.__dict__.get("_is_mutated") is not _is_mutated:
            cls._is_mutated = _is_mutated
