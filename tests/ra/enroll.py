"""Enrollment requests as a reader tool files them, with a software SM2 key standing in for the
card's (the card itself is exercised in tests/issuance)."""

from __future__ import annotations

import secrets
from typing import Any

from ra.service import CardInput
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from tests.issuance.cards import holder
from tests.ra.rig import RaRig

_counter = iter(range(100, 10**6))


def new_enrollment(rig: RaRig, batch: str | None = None) -> tuple[dict[str, Any], SoftwareKey]:
    n = next(_counter)
    who = holder(n)
    key = SoftwareKey.generate("sm2")
    csr = CsrBuilder().subject(parse_name(f"CN={who.name},serialNumber={who.ssn},C=CN")).sign(key)
    card = CardInput(secrets.token_hex(16).upper(), f"E{n:08d}")
    return rig.ra.submit_enrollment(rig.client, who, card, csr.dump(), batch), key
