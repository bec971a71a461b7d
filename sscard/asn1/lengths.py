"""asn1crypto 1.5.1 mistakes some definite lengths for the indefinite form; corrected here.

``dump()`` decides a value had an indefinite length (BER 0x80) by looking at the last octet of
its header alone, so a definite length whose last octet is 0x80 (128, 384, 640, ... octets:
``30 81 80``, ``30 82 01 80``) counts as indefinite too, and the value is re-encoded from its
parsed form on every ``dump()`` instead of returning the octets it was parsed from. That is
slow (a large CRL's tbsCertList re-encoded on each signature check) and can be wrong:
re-encoding is lossy for some values (a BIT STRING with unused bits, as in a subjectUniqueID),
so a correctly signed certificate whose tbsCertificate is 384 octets long failed its signature
check, and a re-encoded value differs from the octets whose fingerprint a caller computed.

Only the misjudgement is corrected: the length octets are read after the identifier octets,
and a value whose length really was indefinite is re-encoded as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asn1crypto import core

_INDEFINITE = b"\x80"


def _length_octets(header: bytes) -> bytes:
    """The length octets of a header (X.690 §8.1.2: one identifier octet, more for tag
    numbers of 31 and up, each but the last with bit 8 set)."""
    index = 1
    if header[0] & 0x1F == 0x1F:
        while index < len(header) and header[index] & 0x80:
            index += 1
        index += 1
    return header[index:]


def _definite_mistaken_for_indefinite(value: core.Asn1Value) -> bool:
    header = value._header
    return (header is not None and header[-1:] == _INDEFINITE
            and value.explicit is None  # explicit tags stack headers; left to asn1crypto
            and _length_octets(header) != _INDEFINITE)


def _corrected(dump: Callable[..., bytes]) -> Callable[..., bytes]:
    def corrected_dump(self: Any, force: bool = False) -> bytes:
        if not force and _definite_mistaken_for_indefinite(self):
            contents = self.contents  # re-encodes, and drops the header, only if changed
            if self._header is not None:
                return bytes(self._header + contents + self._trailer)
        return dump(self, force)

    corrected_dump.__doc__ = dump.__doc__
    corrected_dump.__wrapped__ = dump  # type: ignore[attr-defined]
    return corrected_dump


def correct_definite_lengths() -> None:
    """Apply the correction to the classes whose ``dump()`` re-encodes (once)."""
    for cls in (core.Primitive, core.Sequence, core.SequenceOf):
        if not hasattr(cls.dump, "__wrapped__"):
            cls.dump = _corrected(cls.dump)
