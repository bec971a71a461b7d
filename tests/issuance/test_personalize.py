"""Personalisation of blank emulated cards in process (the PC/SC run is in test_pcsc.py):
the whole flow, resumption and rollback after an interruption at every step, and the checks
that leave neither a half-issued card nor an orphan certificate."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509

from ca.records import Status
from keymgmt.ports_inprocess import InProcessKmc
from reader_tools.issuance_client import LocalBackend
from reader_tools.issuance_journal import DONE, ROLLED_BACK, Journal
from reader_tools.personalize import (
    STEPS,
    AwaitingApproval,
    CardOrder,
    PersonalisationError,
    Personalizer,
)
from sscard.card.client import ENC_PUB
from sscard.card.keyhandle import CardKey
from sscard.crypto.algorithms import EncryptionScheme
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.sm2 import CipherFormat
from sscard.emulator.card import CardState
from sscard.validation import validate_path
from tests.issuance.cards import card_number, holder, inserted, new_blank_card
from tests.issuance.conftest import BATCH
from tests.ra.rig import RaRig

PIN = "246810"


class Interrupted(BaseException):
    """Stands for the process dying: nothing catches it (as nothing catches SIGKILL)."""


def personalise(rig: RaRig, card: Path, journal: Path, order: CardOrder,
                stop_after: str | None = None, backend: Any = None) -> Any:
    def on_step(step: str) -> None:
        if step == stop_after:
            raise Interrupted(step)

    with inserted(card) as (client, psam):
        p = Personalizer(client, psam, backend or LocalBackend(rig.ra, rig.client), journal,
                         on_step)
        return p.personalise(order, PIN)


def rollback(rig: RaRig, card: Path, journal: Path) -> Journal:
    with inserted(card) as (client, psam):
        return Personalizer(client, psam, LocalBackend(rig.ra, rig.client),
                            journal).rollback("test: interrupted")


def certificates_for(rig: RaRig, ssn: str) -> dict[str, Status]:
    """Every certificate the CA issued for this holder: serial -> status."""
    out = {}
    for status, _profile, subject in rig.ca.list_certificates(limit=10000):
        if ssn in subject:
            out[f"{status.serial:x}"] = status.status
    return out


def assert_issued_card(rig: RaRig, card: Path, order: CardOrder) -> None:
    """The card holds its data and two certificates that validate to the root; its keys sign
    and decrypt; every certificate issued for the holder is on this card."""
    chain = rig.ca.chain()
    with inserted(card) as (client, _psam):
        info = client.read_info()
        assert info.holder == order.holder
        assert info.card.card_number == order.card_number
        sign = x509.Certificate.load(client.read_certificate("sign"))
        enc = x509.Certificate.load(client.read_certificate("enc"))
        for cert in (sign, enc):
            result = validate_path(cert, trust_anchors=[chain[-1]], intermediates=chain[:-1])
            assert result.valid, result.reasons
        assert sign.subject.native["serial_number"] == order.holder.ssn
        message = "养老金发放通知".encode()
        key = PublicKey.from_spki(enc["tbs_certificate"]["subject_public_key_info"].dump())
        assert CardKey(client, lambda: PIN, which="enc").decrypt(
            key.raw.encrypt(message, CipherFormat.C1C3C2),
            EncryptionScheme.SM2_C1C3C2) == message
        assert client.public_point(ENC_PUB) == \
            bytes(enc["tbs_certificate"]["subject_public_key_info"]["public_key"].contents[1:])
        on_card = {f"{sign.serial_number:x}", f"{enc.serial_number:x}"}
    issued = certificates_for(rig, order.holder.ssn)
    assert {s for s, st in issued.items() if st is Status.GOOD} == on_card
    assert set(issued) == on_card  # nothing issued twice on the way


def assert_rolled_back(rig: RaRig, card: Path, order: CardOrder, journal: Journal) -> None:
    """No certificate of the holder is left good; the card holds no certificate and no holder
    data; the journal and the RA say so."""
    issued = certificates_for(rig, order.holder.ssn)
    assert all(st is Status.REVOKED for st in issued.values()), issued
    with inserted(card) as (client, _psam):
        assert client.read_certificate("sign") is None
        assert client.read_certificate("enc") is None
        client.select_ssse()
        assert client.read_holder_data().ssn == ""
    assert journal.status == ROLLED_BACK
    request_id = journal.get("request").get("request_id")
    if request_id:
        info = rig.ra.request(rig.client, request_id)
        assert info["state"] == "failed" and info["card"]["status"] == "spoiled"


def test_personalise_blank_card(rig: RaRig, tmp_path: Path, serial_no: int) -> None:
    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    outcome = personalise(rig, card, tmp_path / "j", order)
    assert outcome.status == DONE and outcome.sign_serial and outcome.enc_serial
    assert_issued_card(rig, card, order)
    info = rig.ra.request(rig.client, outcome.request_id)
    assert info["state"] == "done" and info["card"]["status"] == "active"
    # the card's PIN is the new one; the journal holds no PIN
    assert CardState.load(card).pin == PIN
    assert PIN not in (tmp_path / "j" / f"{outcome.card_id}.json").read_text()
    # a second run on the finished card changes nothing
    again = personalise(rig, card, tmp_path / "j", order)
    assert again == outcome
    assert len(certificates_for(rig, order.holder.ssn)) == 2


@pytest.mark.parametrize("step", STEPS[:-1])
def test_interrupted_then_resumed(rig: RaRig, tmp_path: Path, serial_no: int,
                                  step: str) -> None:
    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    with pytest.raises(Interrupted):
        personalise(rig, card, tmp_path / "j", order, stop_after=step)
    personalise(rig, card, tmp_path / "j", order)
    assert_issued_card(rig, card, order)


@pytest.mark.parametrize("step", STEPS[:-1])
def test_interrupted_then_rolled_back(rig: RaRig, tmp_path: Path, serial_no: int,
                                      step: str) -> None:
    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    with pytest.raises(Interrupted):
        personalise(rig, card, tmp_path / "j", order, stop_after=step)
    journal = rollback(rig, card, tmp_path / "j")
    assert_rolled_back(rig, card, order, journal)
    with pytest.raises(PersonalisationError, match="rolled back"):
        personalise(rig, card, tmp_path / "j", order)


class DiesAfterSubmit(LocalBackend):
    """The RA took the request, but the reader tool died before it saw the answer."""

    def submit(self, *args: Any, **kw: Any) -> dict[str, Any]:
        super().submit(*args, **kw)
        raise Interrupted("after submit")


def test_killed_between_submit_and_journal(rig: RaRig, tmp_path: Path, serial_no: int) -> None:
    """The RA answers the re-submission (a new CSR for the same card key) with the same request:
    no second certificate."""
    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    with pytest.raises(Interrupted):
        personalise(rig, card, tmp_path / "j", order,
                    backend=DiesAfterSubmit(rig.ra, rig.client))
    assert len(certificates_for(rig, order.holder.ssn)) == 2
    personalise(rig, card, tmp_path / "j", order)
    assert_issued_card(rig, card, order)


def test_killed_between_submit_and_journal_then_rolled_back(
        rig: RaRig, tmp_path: Path, serial_no: int) -> None:
    """The journal does not know the request yet; the RA does. Rolling back the card and then
    resubmitting would be refused, and the RA's own record lets an officer find the request."""
    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    with pytest.raises(Interrupted):
        personalise(rig, card, tmp_path / "j", order,
                    backend=DiesAfterSubmit(rig.ra, rig.client))
    # resuming learns the request id from the RA, and then rollback revokes
    with pytest.raises(Interrupted):
        personalise(rig, card, tmp_path / "j", order, stop_after="enroll")
    journal = rollback(rig, card, tmp_path / "j")
    assert_rolled_back(rig, card, order, journal)


def test_waits_for_an_officer_without_batch(rig: RaRig, tmp_path: Path, serial_no: int) -> None:
    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no))
    with pytest.raises(AwaitingApproval) as waiting:
        personalise(rig, card, tmp_path / "j", order)
    request_id = str(waiting.value).split()[1]
    assert certificates_for(rig, order.holder.ssn) == {}
    rig.ra.approve(rig.actor("officer1"), request_id, "documents checked")
    personalise(rig, card, tmp_path / "j", order)
    assert_issued_card(rig, card, order)


def test_wrong_card_for_journal_refused(rig: RaRig, tmp_path: Path, serial_no: int) -> None:
    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    with pytest.raises(Interrupted):
        personalise(rig, card, tmp_path / "j", order, stop_after="keygen")
    other = CardOrder(holder(serial_no + 500), card_number(serial_no + 500), batch=BATCH)
    with pytest.raises(PersonalisationError, match="roll it back first"):
        personalise(rig, card, tmp_path / "j", other)


def test_bad_order_refused_before_touching_the_card(rig: RaRig, tmp_path: Path) -> None:
    card = new_blank_card(tmp_path / "card.json")
    before = card.read_bytes()
    bad = CardOrder(holder(1), card_number(1), batch=BATCH)
    with pytest.raises(PersonalisationError, match="PIN"):
        with inserted(card) as (client, psam):
            Personalizer(client, psam, LocalBackend(rig.ra, rig.client),
                         tmp_path / "j").personalise(bad, "12")
    assert card.read_bytes() == before


def test_enveloped_key_blob_is_for_this_card_only(rig: RaRig, tmp_path: Path,
                                                  serial_no: int) -> None:
    """The wrapped key the RA hands out is useless to another card: importing it elsewhere
    fails."""
    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    outcome = personalise(rig, card, tmp_path / "j", order)
    blob = base64.b64decode(rig.ra.request(rig.client, outcome.request_id)["enveloped_key_blob"])
    other = new_blank_card(tmp_path / "other.json")
    from sscard.card.errors import CardError

    with inserted(other) as (client, psam):
        client.select_ssse()
        client.external_authenticate(0x0B, psam)
        client.generate_signing_key()
        with pytest.raises(CardError):
            client.import_enveloped_key(blob)


def test_personalise_with_kmc_cryptograms(rig: RaRig, tmp_path: Path, serial_no: int) -> None:
    """A terminal without a PSAM: the KMC computes the card authentication cryptograms from
    its card master keys."""
    from keymgmt.cardkeys import CardKeyService, ServiceAuthenticator
    from sscard.emulator import testkeys

    cardkeys = CardKeyService(rig.kmc)
    if not cardkeys.list_master_keys():
        for kid in testkeys.KeyId:
            cardkeys.import_root_key("63", int(kid), "sm4", testkeys.root_test_key(
                kid, testkeys.CardAlgorithm.SM4))
    terminal = rig.kmc.authenticate(rig.kmc.add_caller(f"terminal-{serial_no}", "terminal"))
    cardkeys.bind_terminal(terminal.name, ["63"])
    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    with inserted(card) as (client, _psam):
        Personalizer(client, ServiceAuthenticator(cardkeys, terminal),
                     LocalBackend(rig.ra, rig.client), tmp_path / "j").personalise(order, PIN)
    assert_issued_card(rig, card, order)


class RaDiesAfterTheSigningCertificate(BaseException):
    """The RA process stops between issuing the signing certificate and escrowing."""


def test_ra_stopped_mid_issuance_then_finished(rig: RaRig, tmp_path: Path,
                                                 serial_no: int) -> None:
    """The RA stopped after the signing certificate; the request stays approved. The reader
    tool's next run resubmits, and the RA finishes without issuing the signing certificate
    twice."""
    import dataclasses
    import datetime as dt

    from ra.service import RegistrationAuthority

    card = new_blank_card(tmp_path / "card.json")
    order = CardOrder(holder(serial_no), card_number(serial_no), batch=BATCH)
    kmc = rig.ra.kmc
    assert isinstance(kmc, InProcessKmc)
    real_escrow = kmc.kmc.escrow

    def dying_escrow(*_a: Any, **_kw: Any) -> Any:
        raise RaDiesAfterTheSigningCertificate

    kmc.kmc.escrow = dying_escrow
    try:
        with pytest.raises(RaDiesAfterTheSigningCertificate):
            personalise(rig, card, tmp_path / "j", order)
    finally:
        kmc.kmc.escrow = real_escrow
    assert len(certificates_for(rig, order.holder.ssn)) == 1
    # a restarted RA (no waiting for the stall timeout in a test)
    restarted = RegistrationAuthority(rig.ra.engine, rig.audit, rig.ra.ca, kmc, dataclasses.replace(
        rig.ra.config, resume_after=dt.timedelta(0)))
    personalise(rig, card, tmp_path / "j", order,
                backend=LocalBackend(restarted, rig.client))
    assert_issued_card(rig, card, order)  # exactly two certificates, both on the card
