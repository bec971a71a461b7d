"""Errors of the X.509 layer."""

from __future__ import annotations


class X509Error(Exception):
    """Base of the X.509 layer's errors."""


class X509ParseError(X509Error, ValueError):
    """Input that is not a well-formed certificate, CSR or CRL; the message says what is wrong."""


class BuilderError(X509Error, ValueError):
    """A builder used wrongly: a field set twice, a required field missing, a bad value."""
