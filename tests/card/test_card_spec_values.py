"""The check values printed in CARD_SPEC.md hold for this code."""

from __future__ import annotations

from sscard.card.client import CardInfo, pki_pin_cryptogram, pki_pin_ctk
from sscard.card.diversify import CardAlgorithm
from sscard.card.mohrss import ireadcardbas
from sscard.card.records import CardData, HolderData
from sscard.crypto import sm4
from sscard.emulator.card import pin_ctk


def test_pki_pin_ctk_and_cryptogram():
    assert pki_pin_ctk("123456").hex().upper() == "3DE741F445DD357BEA4E6C3FE6437036"
    assert pin_ctk("123456") == pki_pin_ctk("123456")  # emulator and client agree
    challenge = bytes.fromhex("178CEDCF32C5D7990216632170C7CD37")
    assert pki_pin_cryptogram("123456", challenge).hex().upper() == \
        "358B51056B9B9EB2C96B20E7DB7A6B8F"
    assert sm4.ecb_encrypt(pki_pin_ctk("123456"), challenge).hex().upper() == \
        "358B51056B9B9EB2C96B20E7DB7A6B8F"


def test_ireadcardbas_reproduces_the_spec_example():
    atr = bytes.fromhex("3B6D0000") + bytes.fromhex("00814E43238697159900BF7C7A")
    info = CardInfo(
        atr=atr,
        algorithm=CardAlgorithm.DES3,
        card=CardData(card_id=bytes.fromhex("639900D15600000500BF7C7A48FB4966"),
                      card_type="1", spec_version="1.00", init_org="639900000000",
                      issue_date="20101001", expiry_date="20201001", card_number="X00000019"),
        holder=HolderData(ssn="111111198101011110", name="张三", sex="1", ethnicity="01",
                          birthplace="111111", birth_date="19810101"),
    )
    assert ireadcardbas(info, "410100813475", "00037261202007000128") == (
        "639900|111111198101011110|X00000019|639900D15600000500BF7C7A48FB4966|张三|"
        "00814E43238697159900BF7C7A|1.00|20101001|20201001|410100813475|"
        "00037261202007000128|"
    )


def test_read_record_example_apdu_addresses_ef05_record_7():
    from sscard.emulator.card import EmulatedCard
    from sscard.emulator.sample import sample_card

    card = EmulatedCard(sample_card())
    card.power_on()
    assert card.process(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))[:1] == b"\x61"
    answer = card.process(bytes.fromhex("00B2072C0B"))  # the spec's example
    assert answer[-2:] == b"\x90\x00" and answer[:2] == b"\x07\x09"


def test_card_demo_runs(tmp_path):
    from sscard.emulator.demo import card_demo

    lines = card_demo(tmp_path)
    assert any("iReadCardBas 639900|111111198101011110|" in line for line in lines)
    assert lines[-1].endswith("PSO DECIPHER works")
