"""The two families of CMS content-type OIDs: RFC 5652 and GM/T 0010 (1.2.156.10197.6.1.4.2.x).

Both are produced on request and both are accepted when parsing; everything else in this package
works on the RFC 5652 names and maps at the edges.
"""

from __future__ import annotations

import enum

from sscard import asn1 as _asn1  # noqa: F401  (registers the gm_* content types)


class Flavour(enum.Enum):
    """Which content-type OIDs to write."""

    RFC5652 = "rfc5652"
    GM = "gm"


_GM = {
    "data": "gm_data",
    "signed_data": "gm_signed_data",
    "enveloped_data": "gm_enveloped_data",
}
_STANDARD = {gm: std for std, gm in _GM.items()}


def content_type(name: str, flavour: Flavour) -> str:
    """The asn1crypto content-type name to write for ``name`` ('data', 'signed_data', ...)."""
    if flavour is Flavour.GM:
        return _GM.get(name, name)
    return name


def normalise(name: str) -> str:
    """Map a parsed content-type name of either family to the RFC 5652 name."""
    return _STANDARD.get(name, name)


def flavour_of(name: str) -> Flavour:
    return Flavour.GM if name in _STANDARD else Flavour.RFC5652
