"""sscard.card.integrity over the in-process emulated card (the commands that use it run over
PC/SC in test_pcsc_stack.py): a certificate is the card's only if it certifies the card's own
key and names its holder; a snapshot says whom the card is issued to."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sscard.card.errors import CardMismatch
from sscard.card.integrity import certificate_problem, check_certificate, snapshot
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.sm2 import SM2PrivateKey, SM2PublicKey
from sscard.emulator.inprocess import card_in_reader
from sscard.emulator.sample import CardProfile, blank_card, sample_card
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CertificateBuilder
from sscard.x509.names import parse_name

CA = SoftwareKey.generate("sm2")


def certificate(point: bytes, ssn: str | None = "111111198101011110") -> bytes:
    now = dt.datetime.now(dt.UTC)
    subject = "CN=张三" + (f",serialNumber={ssn}" if ssn else "") + ",C=CN"
    return (CertificateBuilder().subject(parse_name(subject))
            .issuer(parse_name("CN=Test SS CA,C=CN"))
            .public_key(PublicKey(SM2PublicKey.from_point(point))).serial_number(42)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .sign(CA).dump())


def test_certificate_checked_against_the_cards_key_and_holder(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    sample_card(CardProfile(generation=3)).save(path)
    with card_in_reader(path) as (client, psam):
        ssn = client.read_holder_data().ssn
        foreign = certificate(SM2PrivateKey.generate().public_key().point)
        assert "holds no signing key" in str(certificate_problem(client, "sign", foreign, ssn))
        client.select_ssse()
        client.external_authenticate(0x0B, psam)
        point = client.generate_signing_key()
        with pytest.raises(CardMismatch, match="certifies another key"):
            check_certificate(client, "sign", foreign, ssn)
        with pytest.raises(CardMismatch, match="names SSN 11010519491231002X"):
            check_certificate(client, "sign", certificate(point, "11010519491231002X"), ssn)
        with pytest.raises(CardMismatch, match="cannot be parsed"):
            check_certificate(client, "sign", b"\x30\x03\x02\x01\x00", ssn)
        check_certificate(client, "sign", certificate(point), ssn)
        check_certificate(client, "sign", certificate(point, None), ssn)  # no SSN to compare
        # a key about to be imported stands in for the card's
        enc = SM2PrivateKey.generate().public_key().point
        check_certificate(client, "enc", certificate(enc), ssn, point=enc)
        with pytest.raises(CardMismatch, match="holds no encryption key"):
            check_certificate(client, "enc", certificate(enc), ssn)


def test_snapshot_tells_a_blank_card_from_an_issued_one(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    blank_card(CardProfile(generation=3)).save(path)
    with card_in_reader(path) as (client, psam):
        found = snapshot(client)
        assert found.blank and found.certificates == {}
        assert "nobody" in found.describe()
        client.select_ssse()
        client.external_authenticate(0x0B, psam)
        point = client.generate_signing_key()
        der = certificate(point)
        client.write_certificate("sign", der)
        found = snapshot(client)
        assert not found.blank and found.certificates == {"sign": der}
        assert "a signing certificate" in found.describe()
        client.clear_certificate("sign")
        assert client.read_certificate("sign") is None and snapshot(client).blank


def test_snapshot_of_a_second_generation_card(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    sample_card(CardProfile(generation=2)).save(path)
    with card_in_reader(path) as (client, _psam):
        found = snapshot(client)
    assert found.holder.ssn == "111111198101011110" and found.certificates == {}
    assert not found.blank
