"""Blank and sample cards for the emulator: the file model filled with empty or sample
records, per-card keys diversified from the test provincial keys."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sscard.card import codec
from sscard.card.diversify import CardAlgorithm, card_key
from sscard.card.records import EF05_LAYOUT, EF06_LAYOUT, MOHRSS_RID, CardData, HolderData
from sscard.emulator.card import (
    CERT_FILE_SIZE,
    DATA_DFS,
    ENC_CERT,
    PKI_ADF,
    SIGN_CERT,
    SSSE,
    CardState,
)
from sscard.emulator.testkeys import KeyId, provincial_test_key

EF0D_LAYOUT: dict[int, tuple[int, int]] = {0xEA: (1, 12), 0xEB: (2, 3)}
# [P] DF01-DF04 content is not public; each data DF gets two small records
DF_LAYOUT: dict[int, tuple[int, int]] = {0x20: (1, 8), 0x21: (2, 16)}

INITIAL_PIN = "123456"
SAMPLE_HOLDER = HolderData(
    ssn="111111198101011110", name="张三", sex="1", ethnicity="01", birthplace="111111",
    birth_date="19810101",
)


def make_atr(card_specific: bytes) -> bytes:
    """``3B 6D 00 00`` + 13 historical bytes ending with 8 card-specific bytes, the shape of
    the ATR in CARD_SPEC §5's example (its last 8 bytes are the card factor)."""
    if len(card_specific) != 8:
        raise ValueError("card-specific ATR part must be 8 bytes")
    return bytes.fromhex("3B6D0000" + "00814E4323") + card_specific


def _empty(layout: dict[int, tuple[int, int]]) -> list[bytes]:
    ordered = sorted(layout.items(), key=lambda item: item[1][0])
    return [codec.Tlv(tag, b"\x00" * length).encode() for tag, (_, length) in ordered]


def _filled(layout: dict[int, tuple[int, int]], values: dict[int, bytes]) -> list[bytes]:
    ordered = sorted(layout.items(), key=lambda item: item[1][0])
    return [codec.Tlv(tag, values.get(tag, b"\x00" * length)).encode()
            for tag, (_, length) in ordered]


@dataclass(frozen=True)
class CardProfile:
    generation: int = 3
    region_code: str = "639900"
    pin_max_tries: int = 3
    select_answers_61xx: bool = True


def blank_card(profile: CardProfile, card_specific: bytes | None = None) -> CardState:
    """A card after initialisation at the factory: keys in place, data files empty, PIN
    123456."""
    algorithm = CardAlgorithm.for_generation(profile.generation)
    atr = make_atr(card_specific or secrets.token_bytes(8))
    keys = {
        int(kid): card_key(provincial_test_key(kid, profile.region_code, algorithm),
                           profile.region_code, atr, algorithm)
        for kid in KeyId
    }
    card_id = codec.bcd_encode(profile.region_code, 3) + MOHRSS_RID + secrets.token_bytes(8)
    records = {
        f"{SSSE}/0005": _filled(EF05_LAYOUT, {0x01: card_id}),
        f"{SSSE}/0006": _empty(EF06_LAYOUT),
    }
    binaries = {f"{SSSE}/0007": b"\x00" * 0x300, f"{SSSE}/0008": b"\x00" * 0x1000}
    for name in DATA_DFS.values():
        records[f"{name}/0005"] = _empty(DF_LAYOUT)
    if profile.generation >= 3:
        records[f"{SSSE}/000D"] = _empty(EF0D_LAYOUT)
        binaries[f"{PKI_ADF}/{SIGN_CERT:04X}"] = b"\xff" * CERT_FILE_SIZE
        binaries[f"{PKI_ADF}/{ENC_CERT:04X}"] = b"\xff" * CERT_FILE_SIZE
    return CardState(
        generation=profile.generation,
        atr=atr,
        pin=INITIAL_PIN,
        pin_max_tries=profile.pin_max_tries,
        pin_tries_left=profile.pin_max_tries,
        keys=keys,
        key_tries_left={k: 5 for k in keys},
        records=records,
        binaries=binaries,
        select_answers_61xx=profile.select_answers_61xx,
    )


def sample_card(profile: CardProfile | None = None, holder: HolderData = SAMPLE_HOLDER,
                today: dt.date | None = None) -> CardState:
    """A personalised card: EF05 and EF06 filled with sample data (as the issuing office
    writes them), PIN 123456."""
    profile = profile or CardProfile()
    state = blank_card(profile)
    today = today or dt.date.today()
    card_id = state.records[f"{SSSE}/0005"][0][2:]
    card = CardData(
        card_id=card_id,
        card_type="3" if profile.generation >= 3 else "1",
        spec_version=f"{max(profile.generation, 1)}.00",
        init_org=profile.region_code + "000000",
        issue_date=today.strftime("%Y%m%d"),
        expiry_date=(today + dt.timedelta(days=3652)).strftime("%Y%m%d"),  # ten years
        card_number="X" + secrets.choice("0123456789") + f"{secrets.randbelow(10**7):07d}",
    )
    state.records[f"{SSSE}/0005"] = _filled(EF05_LAYOUT, card.records())
    state.records[f"{SSSE}/0006"] = _filled(EF06_LAYOUT, holder.records())
    if profile.generation >= 3:
        state.records[f"{SSSE}/000D"] = _filled(
            EF0D_LAYOUT, {0xEA: codec.an_encode("P" + card_id[-5:].hex().upper()[:11], 12),
                          0xEB: codec.bcd_encode(profile.region_code[:6], 3)})
    return state
