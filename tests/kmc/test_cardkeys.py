"""Card master keys: the KMC's derived card keys reproduce the cryptograms that the emulated
card and PSAM expect; PSAM export; the Step-1/Step-2 service; bad input."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from keymgmt import export_seal
from keymgmt.cardkeys import PSAM_EXPORT_PURPOSE, CardKeyId, CardKeyService, ServiceAuthenticator
from keymgmt.errors import Conflict, KmcError, NotFound, PermissionDenied
from keymgmt.service import KeyManagementCentre, Principal
from sscard.card import diversify as div
from sscard.card.apdu import CommandApdu
from sscard.card.auth import CardIdentity, PsamAuthenticator
from sscard.card.client import CardClient
from sscard.card.diversify import CardAlgorithm
from sscard.card.errors import CardError
from sscard.card.transport import InProcessTransport
from sscard.crypto.asymmetric import PrivateKey
from sscard.crypto.sm2 import SM2PrivateKey
from sscard.emulator import psam as psam_emulator
from sscard.emulator import testkeys
from sscard.emulator.card import EmulatedCard
from sscard.emulator.psam import EmulatedPsam, PsamState
from sscard.emulator.sample import CardProfile, blank_card
from sscard.emulator.testkeys import KeyId
from tests.kmc.kmc_helpers import new_kmc

REGION = "639900"


@pytest.fixture
def kmc(tmp_path: Path) -> KeyManagementCentre:
    k = new_kmc(f"sqlite:///{tmp_path / 'kmc.db'}")
    yield k
    k.close()


@pytest.fixture
def terminal(kmc: KeyManagementCentre) -> Principal:
    principal = kmc.authenticate(kmc.add_caller("terminal-1", "terminal"))
    CardKeyService(kmc).bind_terminal("terminal-1", [REGION[:4]])
    return principal


def _import_test_roots(service: CardKeyService) -> None:
    """What the ministry hands over: the (test) root keys, which the KMC keeps as provincial."""
    for alg in CardAlgorithm:
        for kid in KeyId:
            root = testkeys.root_test_key(kid, alg)
            service.import_root_key(REGION[:2], int(kid), "sm4" if alg is CardAlgorithm.SM4
                                    else "3des", root,
                                    expected_kcv=div.ecb_encrypt(root, bytes(alg.block_size),
                                                                 alg)[:3].hex())


def test_key_ids_are_the_cards() -> None:
    assert {int(k) for k in CardKeyId} == {int(k) for k in KeyId}


@pytest.mark.parametrize("generation", [3, 2])
def test_kmc_authenticates_emulated_cards_like_a_psam(
    kmc: KeyManagementCentre, terminal: Principal, generation: int,
) -> None:
    service = CardKeyService(kmc)
    _import_test_roots(service)
    auth = ServiceAuthenticator(service, terminal)
    card = EmulatedCard(blank_card(CardProfile(generation=generation, region_code=REGION)))
    with CardClient(InProcessTransport(card)) as client:
        client.internal_authenticate(auth)  # the KMC's check value equals the card's answer
        client.external_authenticate(KeyId.READ, auth)  # the card accepts the KMC's cryptogram
        assert KeyId.READ in card.session.authenticated_keys
        # secure messaging: block the PIN, then unblock with the KMC's PIN block and MAC
        for _ in range(3):
            with pytest.raises(CardError):
                client.verify_pin("000000")
        client.unblock_pin("246810", auth)
        client.verify_pin("246810")

    # The emulated PSAM, given the same inputs, computes the same values as the KMC.
    psam = PsamAuthenticator(InProcessTransport(EmulatedPsam(psam_emulator.make_test_psam(REGION))))
    psam.transport.connect()
    ident = CardIdentity(card.atr, REGION, CardAlgorithm.for_generation(generation))
    factor, data, challenge = (secrets.token_bytes(8) for _ in range(3))
    assert psam.internal_expected(ident, factor, data) == auth.internal_expected(ident, factor,
                                                                                 data)
    for kid in (KeyId.READ, KeyId.UPDATE):
        assert psam.external_cryptogram(kid, ident, challenge) == \
            auth.external_cryptogram(kid, ident, challenge)


def test_a_card_with_other_keys_is_not_genuine(kmc: KeyManagementCentre,
                                              terminal: Principal) -> None:
    service = CardKeyService(kmc)
    service.generate_master_keys(REGION[:2], ["sm4"])  # random keys: not the emulator's
    auth = ServiceAuthenticator(service, terminal)
    card = EmulatedCard(blank_card(CardProfile(generation=3, region_code=REGION)))
    with CardClient(InProcessTransport(card)) as client:
        with pytest.raises(CardError, match="not genuine"):
            client.internal_authenticate(auth)
        with pytest.raises(CardError):
            client.external_authenticate(KeyId.READ, auth)


def test_generated_keys_personalise_cards_and_psams(
    kmc: KeyManagementCentre, terminal: Principal,
) -> None:
    service = CardKeyService(kmc)
    kcvs = service.generate_master_keys(REGION[:2])
    assert len(kcvs) == 2 * len(CardKeyId)
    station = SM2PrivateKey.generate()
    sealed = service.export_psam(REGION, station.public_key().spki_der())
    # the sealed file holds no key in clear
    provincial = service._provincial_key(REGION[:2], CardKeyId.EXTERNAL_AUTH, CardAlgorithm.SM4)
    assert provincial.hex().upper().encode() not in sealed and provincial not in sealed
    doc = export_seal.open_sealed(sealed, station, PSAM_EXPORT_PURPOSE)
    assert doc["region_code"] == REGION and set(doc["keys"]) == {"SM4", "DES3"}
    template = psam_emulator.make_test_psam(REGION)
    psam_state = PsamState(template.atr, template.terminal_number, template.device_number,
                           {alg: {int(k, 16): bytes.fromhex(v) for k, v in keys.items()}
                            for alg, keys in doc["keys"].items()})
    psam = PsamAuthenticator(InProcessTransport(EmulatedPsam(psam_state)))
    psam.transport.connect()

    # a card personalised with the KMC's per-card keys
    state = blank_card(CardProfile(generation=3, region_code=REGION))
    state.keys = {int(k): service.card_key(REGION, state.atr, int(k), CardAlgorithm.SM4)
                  for k in CardKeyId}
    card = EmulatedCard(state)
    with CardClient(InProcessTransport(card)) as client:
        client.internal_authenticate(psam)
        client.external_authenticate(KeyId.READ, psam)
        client.internal_authenticate(ServiceAuthenticator(service, terminal))
        client.external_authenticate(KeyId.UPDATE, ServiceAuthenticator(service, terminal))

    with pytest.raises(KmcError, match="another recipient"):
        export_seal.open_sealed(sealed, SM2PrivateKey.generate(), PSAM_EXPORT_PURPOSE)
    with pytest.raises(KmcError, match="expected"):
        export_seal.open_sealed(sealed, station, "card-keys")
    tampered = sealed.replace(b'"ciphertext": "', b'"ciphertext": "AAAA')
    with pytest.raises(KmcError):
        export_seal.open_sealed(tampered, station, PSAM_EXPORT_PURPOSE)


def test_step1_step2_line(kmc: KeyManagementCentre, terminal: Principal) -> None:
    service = CardKeyService(kmc)
    _import_test_roots(service)
    card = EmulatedCard(blank_card(CardProfile(generation=3, region_code=REGION)))
    with CardClient(InProcessTransport(card)) as client:
        client.select_ssse()
        factor, data = secrets.token_bytes(8), secrets.token_bytes(8)
        answer = client.send(CommandApdu(0x00, 0x88, 0x00, 0x00, factor + data, le=8),
                             "INTERNAL AUTHENTICATE")
        challenge = client.get_challenge(8)
        card_id = "639900D15600000500BF7C7A48FB4966"
        step1 = "|".join([REGION, card.atr.hex().upper(), "03", card_id, factor.hex(),
                          data.hex(), "00" * 8, challenge.hex(), "000000000000"]) + "|"
        pkey = service.hsm_step(terminal, step1)
        internal_hex, external_hex, rest = pkey.split("|")
        assert rest == "" and len(internal_hex) == 16 and len(external_hex) == 16
        assert bytes.fromhex(internal_hex) == answer
        client.send(CommandApdu(0x00, 0x82, 0x00, KeyId.READ, bytes.fromhex(external_hex)),
                    "EXTERNAL AUTHENTICATE")
    with pytest.raises(KmcError, match="9 '\\|'-separated fields"):
        service.hsm_step(terminal, "639900|3B")
    with pytest.raises(KmcError, match="hex"):
        service.hsm_step(terminal, step1.replace(card.atr.hex().upper(), "ZZ"))


def test_card_key_bad_input_and_permissions(kmc: KeyManagementCentre,
                                            terminal: Principal) -> None:
    service = CardKeyService(kmc)
    officer = kmc.authenticate(kmc.add_caller("o1", "officer"))
    atr = bytes(13)
    with pytest.raises(NotFound, match="no sm4 card master key 0A for province 63"):
        service.external_cryptogram(terminal, region_code=REGION, atr=atr, algorithm_flag=3,
                                    challenge=bytes(8))
    service.generate_master_keys("63", ["sm4"])
    with pytest.raises(Conflict, match="already has a sm4 key"):
        service.generate_master_keys("63", ["sm4"])
    with pytest.raises(PermissionDenied):
        service.external_cryptogram(officer, region_code=REGION, atr=atr, algorithm_flag=3,
                                    challenge=bytes(8))
    with pytest.raises(KmcError, match="algorithm flag 02"):
        service.external_cryptogram(terminal, region_code=REGION, atr=atr, algorithm_flag=2,
                                    challenge=bytes(8))
    with pytest.raises(KmcError, match="region code must be 6 digits"):
        service.external_cryptogram(terminal, region_code="63990", atr=atr, algorithm_flag=3,
                                    challenge=bytes(8))
    with pytest.raises(KmcError, match="not an external-authentication key"):
        service.external_cryptogram(terminal, region_code=REGION, atr=atr, algorithm_flag=3,
                                    challenge=bytes(8), key_id=0x09)
    with pytest.raises(KmcError, match="ATR too short"):
        service.external_cryptogram(terminal, region_code=REGION, atr=b"\x3b", algorithm_flag=3,
                                    challenge=bytes(8))
    with pytest.raises(KmcError, match="check value does not match"):
        service.import_root_key("64", 0x0A, "sm4", bytes(16), expected_kcv="000000")
    with pytest.raises(KmcError, match="sm4 or 3des"):
        service.generate_master_keys("64", ["aes"])
    with pytest.raises(KmcError, match="not a PIN unblock"):
        service.pin_command(terminal, region_code=REGION, atr=atr, algorithm_flag=3,
                            key_id=0x0A, challenge=bytes(8), header=bytes.fromhex("84240001"),
                            new_pin="123456")
    with pytest.raises(KmcError, match="export recipient public key"):
        service.export_psam(REGION, b"\x30\x00")
    with pytest.raises(KmcError, match="sealed for an SM2 public key"):
        service.export_psam(REGION, PrivateKey.generate("ec-p256").public_key().spki_der())
    # nothing of the failed calls was stored
    assert {(k["province"], k["algorithm"]) for k in service.list_master_keys()} == {("63",
                                                                                       "sm4")}
