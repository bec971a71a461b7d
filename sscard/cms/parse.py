"""Loading CMS ContentInfo from untrusted bytes: PEM or DER, either OID family, never a crash."""

from __future__ import annotations

from asn1crypto import cms

from sscard import asn1 as _asn1  # noqa: F401  (registers the GM/T 0010 content types)
from sscard.cms import _asn1 as _cms_asn1  # noqa: F401  (registers the ECDH schemes)
from sscard.cms.errors import CmsParseError
from sscard.x509.pem import PemError, pem_to_der

_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                 UnicodeDecodeError, RecursionError)


def load_content_info(data: bytes, deep: bool = True) -> cms.ContentInfo:
    """A fully parsed ContentInfo (``deep=False``: only the outer structure, for callers that
    guard their own accesses); raises CmsParseError naming what was wrong."""
    if not data:
        raise CmsParseError("empty input where a CMS message was expected")
    try:
        der = pem_to_der(data)
    except PemError as exc:
        raise CmsParseError(f"CMS: {exc}") from None
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if deep:
            info.native  # noqa: B018  (forces the lazy parser over the whole structure)
        else:
            info["content_type"].native  # noqa: B018
    except _PARSE_ERRORS as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CmsParseError(f"malformed CMS ContentInfo: {msg}") from None
    return info
