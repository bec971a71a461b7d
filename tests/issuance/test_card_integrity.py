"""Issue 12 finding 12, personalisation side (in process; the PC/SC run is in test_pcsc.py):
a card issued to one person is never reported issued to another, never overwritten, and the
card is checked before and after each step."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from reader_tools.issuance_client import LocalBackend
from reader_tools.personalize import CardOrder
from sscard.card.errors import CardMismatch
from sscard.card.records import HolderData
from sscard.emulator.card import CardState
from tests.issuance.cards import card_number, holder, inserted, new_blank_card
from tests.issuance.conftest import BATCH
from tests.issuance.test_personalize import (
    Interrupted,
    assert_issued_card,
    certificates_for,
    personalise,
)
from tests.ra.rig import RaRig


def other_person(n: int) -> CardOrder:
    h = holder(n + 700)
    return CardOrder(HolderData(h.ssn, "王五", "2", h.ethnicity, h.birthplace, h.birth_date),
                     card_number(n + 700), batch=BATCH)


def test_issued_card_refused_for_another_person_with_its_journal(
        rig: RaRig, tmp_path: Path, serial_no: int) -> None:
    """The journal says "done" for 李四; an order for 王五 on that card used to come back as
    "issued" (and the CLI exited 0) while the card still held 李四."""
    card = new_blank_card(tmp_path / "card.json")
    first = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    personalise(rig, card, tmp_path / "j", first)
    before = card.read_bytes()
    second = other_person(serial_no)
    with pytest.raises(CardMismatch, match=f"issued to {first.holder.ssn}"):
        personalise(rig, card, tmp_path / "j", second)
    assert card.read_bytes() == before
    assert certificates_for(rig, second.holder.ssn) == {}
    assert_issued_card(rig, card, first)
    # the same order again is "already issued", not a new issuance
    again = personalise(rig, card, tmp_path / "j", first)
    assert again.already_issued


def test_issued_card_refused_without_its_journal(rig: RaRig, tmp_path: Path,
                                                 serial_no: int) -> None:
    """Another station (no journal for the card) would have overwritten 李四's data, replaced
    the certified key and had a second pair of certificates issued."""
    card = new_blank_card(tmp_path / "card.json")
    first = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    personalise(rig, card, tmp_path / "j", first)
    before = card.read_bytes()
    second = other_person(serial_no)
    with pytest.raises(CardMismatch, match=f"holds data for {first.holder.ssn}.*not blank"):
        personalise(rig, card, tmp_path / "elsewhere", second)
    assert card.read_bytes() == before
    assert certificates_for(rig, second.holder.ssn) == {}
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())
    # not even for the same person: the card is issued, its journal is elsewhere
    with pytest.raises(CardMismatch, match="not blank"):
        personalise(rig, card, tmp_path / "elsewhere", first)
    assert card.read_bytes() == before
    assert_issued_card(rig, card, first)


def test_card_changed_between_steps_is_refused(rig: RaRig, tmp_path: Path,
                                               serial_no: int) -> None:
    """Between two runs someone wrote another person's data onto the card: the resumed run
    stops before its next step instead of issuing certificates over it."""
    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    with pytest.raises(Interrupted):
        personalise(rig, card, tmp_path / "j", order, stop_after="keygen")
    intruder = other_person(serial_no).holder
    with inserted(card) as (client, psam):
        client.select_ssse()
        client.external_authenticate(0x0B, psam)
        client.write_holder_data(intruder)
    with pytest.raises(CardMismatch, match=f"holds data for {intruder.ssn}"):
        personalise(rig, card, tmp_path / "j", order)
    assert certificates_for(rig, order.holder.ssn) == {}
    assert CardState.load(card).binaries["ADF1/0018"][:1] == b"\xff"  # no certificate written


class HandsOutAnotherCardsCertificate(LocalBackend):
    """An RA answer whose signing certificate is for another card's key (a mix-up between two
    stations, or a hostile answer)."""

    def __init__(self, ra: Any, actor: Any, which: str, foreign: str) -> None:
        super().__init__(ra, actor)
        self.which, self.foreign = which, foreign

    def submit(self, *args: Any, **kw: Any) -> dict[str, Any]:
        answer = super().submit(*args, **kw)
        if answer.get("state") == "done":
            answer = dict(answer, **{self.which: self.foreign})
        return answer


@pytest.mark.parametrize("which", ["sign_cert", "enc_cert"])
def test_certificate_for_another_key_is_never_written(rig: RaRig, tmp_path: Path,
                                                      serial_no: int, which: str) -> None:
    """Checked before anything is written: the encryption certificate against the key in the
    wrapped blob, before the blob is imported."""
    donor = new_blank_card(tmp_path / "donor.json")
    donor_order = CardOrder(holder(serial_no + 300), card_number(serial_no + 300), batch=BATCH)
    done = personalise(rig, donor, tmp_path / "j", donor_order)
    foreign = rig.ra.request(rig.client, done.request_id)[which]

    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    backend = HandsOutAnotherCardsCertificate(rig.ra, rig.client, which, foreign)
    with pytest.raises(CardMismatch, match="certifies another key"):
        personalise(rig, card, tmp_path / "j", order, backend=backend)
    state = CardState.load(card)
    assert state.binaries["ADF1/0018"][:1] == b"\xff" and state.enc_d is None
    assert base64.b64decode(foreign)[:2] == b"\x30\x82"



def test_own_run_killed_while_writing_ef06_still_resumes(rig: RaRig, tmp_path: Path,
                                                         serial_no: int) -> None:
    """Killed after the SSN record of EF06 but before the journal's first step: the card is
    not blank any more, but the journal says this station began it, so it resumes."""
    from reader_tools.issuance_journal import IN_PROGRESS, Journal
    from sscard.card import codec
    from sscard.card.client import EF06_SFI

    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    with inserted(card) as (client, psam):
        card_id = client.read_card_data().card_id.hex().upper()
        client.external_authenticate(0x0B, psam)
        client.update_record(EF06_SFI, 1, codec.Tlv(0x08, order.holder.ssn.encode()))
    Journal.for_card(tmp_path / "j", card_id).set_status(IN_PROGRESS)
    personalise(rig, card, tmp_path / "j", order)
    assert_issued_card(rig, card, order)
    # without this station's journal the same half-written card is not taken
    other = new_blank_card(tmp_path / "other.json")
    with inserted(other) as (client, psam):
        client.external_authenticate(0x0B, psam)
        client.update_record(EF06_SFI, 1, codec.Tlv(0x08, order.holder.ssn.encode()))
    with pytest.raises(CardMismatch, match="not blank"):
        personalise(rig, other, tmp_path / "j", order)
