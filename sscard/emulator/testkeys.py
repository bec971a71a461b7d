"""The emulator's provincial-level keys: TEST KEYS, public in this source file, for emulated
cards and PSAMs only. A real PSAM or the KMC's HSM holds real ones.

Key identifiers are the card's (CARD_SPEC §2-3; [P] where marked):"""

from __future__ import annotations

import enum

from sscard.card.diversify import CardAlgorithm, province_factor
from sscard.card.diversify import diversify as _diversify
from sscard.crypto.hashes import sm3


class KeyId(enum.IntEnum):
    """Card key identifiers (P2 of EXTERNAL AUTHENTICATE, P1 of the PSAM's BF DE)."""

    INTERNAL_AUTH = 0x09  # [P] card authenticity (INTERNAL AUTHENTICATE)
    READ = 0x0A  # RKSSSE: read EF07/EF08 and the DF01-DF04 data [O]
    UPDATE = 0x0B  # [P] write card data, keys and certificates (personalisation)
    PIN_UNBLOCK = 0x0C  # [P] secure-messaging key for PIN unblock
    PIN_RELOAD = 0x0D  # [P] secure-messaging key for PIN reload


def root_test_key(key_id: int, algorithm: CardAlgorithm) -> bytes:
    """A ministry-level root key for the test hierarchy (derived from a public label)."""
    return sm3(f"sscard TEST ONLY root key {key_id:02X} {algorithm.name}".encode())[:16]


def provincial_test_key(key_id: int, region_code: str, algorithm: CardAlgorithm) -> bytes:
    """The provincial key a test PSAM holds: the root key diversified by the province factor."""
    return _diversify(root_test_key(key_id, algorithm), province_factor(region_code), algorithm)
