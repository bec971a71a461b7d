"""The card login token's format, shared by the browser agent that makes a token and the
provider that validates it (sscard.idp.authtoken): the format name, the algorithms, what the
card signs and what an origin is.

Kept apart from the validator so that the agent's command (reader_tools.agent) starts without
SQLAlchemy, Flask or the validation stack; SM3 is imported when a login is signed or checked,
not when the module is, for the same reason (``sscard agent --help``: tests/cli/test_startup.py).
"""

from __future__ import annotations

import hashlib

FORMAT = "sscard-auth-token:1"
ALGORITHMS = ("SM2-SM3", "ES256")
MAX_ORIGIN = 255


class TokenError(Exception):
    """A refused token or nonce: ``code`` is stable (programs and the JS library branch on it),
    ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def signed_data(algorithm: str, origin: str, nonce: str) -> bytes:
    """The bytes the card signs for a login at ``origin`` with ``nonce``."""
    if algorithm not in ALGORITHMS:
        raise TokenError("TOKEN_MALFORMED", f"unknown algorithm {algorithm!r}")
    if algorithm == "SM2-SM3":
        from sscard.crypto.hashes import sm3  # cryptography: only when a login is signed

        return sm3(origin.encode()) + sm3(nonce.encode())
    return hashlib.sha256(origin.encode()).digest() + hashlib.sha256(nonce.encode()).digest()


def is_origin(origin: str) -> bool:
    """``scheme://host[:port]``, nothing after: what a browser sends in the Origin header."""
    scheme, sep, rest = origin.partition("://")
    return (bool(sep) and scheme in ("https", "http") and bool(rest)
            and not any(c in rest for c in "/?#@ \t\r\n") and origin.isascii())
