"""Blank emulated cards for issuance tests: a state file per card (as `sscard card emulate`
keeps it) and an in-process PSAM with the test keys of the card's region."""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from pathlib import Path

from sscard.card.auth import PsamAuthenticator
from sscard.card.client import CardClient
from sscard.card.records import HolderData
from sscard.emulator.inprocess import card_in_reader
from sscard.emulator.sample import CardProfile, blank_card

REGION = "639900"


def new_blank_card(path: Path) -> Path:
    blank_card(CardProfile(generation=3, region_code=REGION)).save(path)
    return path


def inserted(path: Path) -> AbstractContextManager[tuple[CardClient, PsamAuthenticator]]:
    """The card at ``path`` in a reader (loaded afresh, as after re-insertion), and a PSAM."""
    return card_in_reader(path, REGION)


def holder(n: int | None = None) -> HolderData:
    """A valid holder with a fresh social security number (checksum per GB 11643)."""
    n = secrets.randbelow(10**3) if n is None else n
    body = f"639900{19700101 + (n % 28):08d}{n % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return HolderData(ssn=body + check, name="李四", sex="1", ethnicity="01",
                      birthplace="639900", birth_date=body[6:14])


def card_number(n: int) -> str:
    return f"T{n:08d}"
