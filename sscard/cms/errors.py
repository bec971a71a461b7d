"""Errors of the CMS layer: each names what was wrong with the input."""

from __future__ import annotations

from sscard.crypto.errors import CryptoError, DecryptionError


class CmsError(CryptoError):
    """Base class for CMS problems."""


class CmsParseError(CmsError, ValueError):
    """The input is not the CMS structure expected (malformed DER/PEM, wrong content type)."""


class CmsBuildError(CmsError, ValueError):
    """A signing or encryption request cannot be carried out as asked (key and certificate do
    not match, an algorithm that does not fit the key, a failed time-stamp fetch)."""


class NoMatchingRecipient(CmsError, DecryptionError):
    """No RecipientInfo of the envelope is addressed to the given certificate."""


class EnvelopeDecryptionError(CmsError, DecryptionError):
    """The envelope is addressed to us but could not be opened (wrong key, corrupt data)."""
