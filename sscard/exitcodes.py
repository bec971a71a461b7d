"""The exit codes of every ``sscard`` command, one table for all groups (docs/cli.md).

0, 1 and 2 mean the same everywhere; the card codes (3 to 12) are the card tools' own cases.
A group names its outcomes with these constants and never with bare numbers.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    """Success: done, valid, intact."""
    REFUSED = 1
    """Refused, or not valid: a signature or certificate that does not verify, an audit log or
    backup that was altered, a request the policy, the state or dual control refuses, a
    service or database that cannot be used. The message says which."""
    USAGE = 2
    """Usage error or unusable input: a wrong option, a file that cannot be read or is not
    what it should be; nothing was done."""
    NO_READER = 3
    """Card: no card reader (unplugged, wrong --reader, pcscd not running)."""
    NO_CARD = 4
    """Card: no card in the reader."""
    CARD_REMOVED = 5
    """Card: the card was pulled during the operation."""
    WRONG_PIN = 6
    """Card: wrong PIN; tries are left."""
    PIN_BLOCKED = 7
    """Card: the PIN is blocked."""
    CARD_STATUS = 8
    """Card: the card answered with an error status word."""
    NO_PSAM = 9
    """Card: the operation needs the PSAM, and there is none."""
    CARD_ERROR = 10
    """Card: the card's answer could not be used (malformed, unexpected)."""
    WAITING = 11
    """Issuance: the RA holds the request for an officer's approval; run again to resume."""
    CARD_MISMATCH = 12
    """Card: wrong card or refused: issued to someone else, a certificate not for the card's
    key or holder, a certified key that would be replaced; nothing was written."""
    RA_UNAVAILABLE = 13
    """Issuance: the RA cannot be used (unreachable, a TLS failure, the station's token
    refused); a batch stops there, the card untouched."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C)."""
