"""Dual-certificate round trip: the card generates its signing key, the KMC generates and
escrows the encryption key and wraps it for that signing key, a CA (here sscard.x509's builder,
standing in for ca/ until integration) issues the encryption certificate, the emulated card
imports the ENVELOPEDKEYBLOB and decrypts a message encrypted to its encryption certificate."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pytest

from keymgmt import pkcs12
from keymgmt.cardkeys import CardKeyService, ServiceAuthenticator
from keymgmt.errors import Conflict, KmcError, PermissionDenied
from keymgmt.service import KeyManagementCentre, OfficerRecipient
from sscard.card.client import CardClient
from sscard.card.transport import InProcessTransport
from sscard.crypto import envelopes
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.sm2 import SM2PrivateKey, SM2PublicKey
from sscard.emulator import testkeys
from sscard.emulator.card import EmulatedCard
from sscard.emulator.sample import CardProfile, sample_card
from sscard.emulator.testkeys import KeyId
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CertificateBuilder
from sscard.x509.names import parse_name
from sscard.x509.verify import verify_certificate_signature
from tests.kmc.kmc_helpers import new_kmc, principals

REGION = "639900"
SSN = "111111198101011110"


@pytest.fixture
def kmc(tmp_path: Path) -> KeyManagementCentre:
    k = new_kmc(f"sqlite:///{tmp_path / 'kmc.db'}")
    yield k
    k.close()


def _ca() -> tuple[SoftwareKey, CertificateBuilder]:
    ca_key = SoftwareKey.generate("sm2")
    name = parse_name("CN=测试社保CA,O=某省人力资源和社会保障厅,C=CN")
    now = dt.datetime.now(dt.UTC)
    root = (CertificateBuilder().subject(name).issuer(name).public_key(ca_key.public_key())
            .serial_number(secrets.randbits(64)).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension("basic_constraints", {"ca": True}, critical=True))
    return ca_key, root


def test_dual_certificate_round_trip(kmc: KeyManagementCentre) -> None:
    who = principals(kmc)
    cardkeys = CardKeyService(kmc)
    for kid in KeyId:
        cardkeys.import_root_key(REGION[:2], int(kid), "sm4",
                                 testkeys.root_test_key(kid, testkeys.CardAlgorithm.SM4))
    terminal = kmc.authenticate(kmc.add_caller("issuing-station", "terminal"))
    cardkeys.bind_terminal("issuing-station", [REGION])
    auth = ServiceAuthenticator(cardkeys, terminal)
    card = EmulatedCard(sample_card(CardProfile(generation=3, region_code=REGION)))

    with CardClient(InProcessTransport(card)) as client:
        client.external_authenticate(KeyId.UPDATE, auth)
        sign_point = client.generate_signing_key()
        sign_spki = SM2PublicKey.from_point(sign_point).spki_der()

        # KMC: generate, escrow, wrap for the card's signing key
        escrow = kmc.escrow(who["ra"], SSN, sign_spki)
        assert escrow.enveloped_key_blob is not None and escrow.enveloped_key_der is not None

        # CA: the encryption certificate for the escrowed public key
        ca_key, root_builder = _ca()
        root = root_builder.sign(ca_key)
        now = dt.datetime.now(dt.UTC)
        enc_cert = (CertificateBuilder()
                    .subject(parse_name(f"CN=张三,serialNumber={SSN},C=CN"))
                    .issuer(root.subject).public_key(PublicKey.from_spki(escrow.public_key_spki))
                    .serial_number(secrets.randbits(64)).not_valid_before(now)
                    .not_valid_after(now + dt.timedelta(days=365))
                    .add_extension("key_usage", {"key_encipherment", "data_encipherment"},
                                   critical=True)
                    .sign(ca_key))
        verify_certificate_signature(enc_cert, root)
        serial = kmc.attach_certificate(who["ca"], escrow.key_id, enc_cert.dump())
        assert kmc.find_keys(who["auditor"], certificate_serial=serial)[0]["key_id"] == \
            escrow.key_id

        # card: import the ENVELOPEDKEYBLOB, write the certificate
        client.import_enveloped_key(escrow.enveloped_key_blob)
        client.write_certificate("enc", enc_cert.dump())
        assert client.public_point(0x0014) == \
            PublicKey.from_spki(escrow.public_key_spki).raw.point

        # anyone: encrypt to the certificate; the card decrypts (after the PKI PIN)
        message = "社保待遇核定结果 2026".encode()
        cert_key = PublicKey.from_spki(enc_cert["tbs_certificate"]["subject_public_key_info"]
                                       .dump())
        ciphertext = cert_key.raw.encrypt(message, envelopes.CipherFormat.C1C3C2)
        client.verify_pki_pin("123456")
        assert client.decipher(ciphertext) == message

    # The SM2EnvelopedKey form is the same key, unwrapped with sscard.crypto by whoever holds
    # the signing key (here the emulated card's scalar, for the check only).
    card_sign = SM2PrivateKey.from_private_value(card.state.sign_d or 0)
    unwrapped = envelopes.unwrap(escrow.enveloped_key_der, card_sign)
    assert unwrapped.private_value() == card.state.enc_d


def test_attach_certificate_checks(kmc: KeyManagementCentre) -> None:
    who = principals(kmc)
    res = kmc.escrow(who["ca"], SSN, SM2PrivateKey.generate().public_key().spki_der())
    ca_key, root_builder = _ca()
    root = root_builder.sign(ca_key)
    with pytest.raises(KmcError, match="not the escrowed key"):
        kmc.attach_certificate(who["ca"], res.key_id, root.dump())
    with pytest.raises(KmcError, match="certificate"):
        kmc.attach_certificate(who["ca"], res.key_id, b"\x30\x03\x02\x01\x01")
    with pytest.raises(PermissionDenied):
        kmc.attach_certificate(who["ra"], res.key_id, root.dump())
    now = dt.datetime.now(dt.UTC)

    def issue() -> bytes:
        return bytes((CertificateBuilder().subject(parse_name("CN=x")).issuer(root.subject)
                      .public_key(PublicKey.from_spki(res.public_key_spki))
                      .serial_number(secrets.randbits(64)).not_valid_before(now)
                      .not_valid_after(now + dt.timedelta(days=1)).sign(ca_key)).dump())

    first = issue()
    kmc.attach_certificate(who["ca"], res.key_id, first)
    with pytest.raises(Conflict, match="already has certificate"):
        kmc.attach_certificate(who["ca"], res.key_id, issue())
    # recovery by certificate serial finds the key and puts the certificate into the PKCS#12
    serial = kmc.find_keys(who["auditor"], owner=SSN)[0]["certificate_serial"]
    rid = kmc.request_recovery(who["o1"], certificate_serial=serial, reason="r",
                               recipient=OfficerRecipient("o4"))["request_id"]
    kmc.approve(who["o2"], rid)
    kmc.approve(who["o3"], rid)
    out = kmc.complete_recovery(who["o4"], rid)
    assert out.pkcs12 is not None and out.pkcs12_passphrase is not None
    _key, cert = pkcs12.open_pfx(out.pkcs12, out.pkcs12_passphrase.encode())
    assert cert == first
