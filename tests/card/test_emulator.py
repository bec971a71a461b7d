"""The emulated card's APDU behaviour, in-process (fast); the same objects sit behind pcscd in
the stack tests."""

from __future__ import annotations

import pytest

from sscard.card import diversify as div
from sscard.card import errors
from sscard.card.apdu import CommandApdu
from sscard.card.auth import KeyServiceAuthenticator, PsamAuthenticator
from sscard.card.client import CardClient
from sscard.card.codec import Tlv
from sscard.card.diversify import CardAlgorithm
from sscard.card.transport import InProcessTransport
from sscard.crypto.envelopes import BLOB_LEN, EnvelopedKey, EnvelopeError, wrap
from sscard.crypto.sm2 import SM2PrivateKey, SM2PublicKey
from sscard.emulator.card import EmulatedCard
from sscard.emulator.psam import EmulatedPsam, make_test_psam
from sscard.emulator.sample import CardProfile, blank_card, sample_card
from sscard.emulator.testkeys import KeyId, provincial_test_key, root_test_key


@pytest.fixture(params=[3, 2], ids=["gen3", "gen2"])
def rig(request, tmp_path):
    state = sample_card(CardProfile(generation=request.param))
    path = tmp_path / "card.json"
    state.save(path)
    card = EmulatedCard.open(path)
    client = CardClient(InProcessTransport(card))
    client.connect()
    psam_transport = InProcessTransport(EmulatedPsam(make_test_psam()))
    psam_transport.connect()
    return card, client, PsamAuthenticator(psam_transport), path


def raw(card: EmulatedCard, hex_apdu: str) -> str:
    return card.process(bytes.fromhex(hex_apdu.replace(" ", ""))).hex().upper()


def test_record_addressing_by_number_tag_and_sfi(rig):
    card, client, _psam, _path = rig
    client.select_ssse()
    by_sfi = client.read_record(6, 1, 18)
    assert by_sfi.value == b"111111198101011110"
    client.select_file(0x0006)
    assert raw(card, "00B2 0104 14")[:4] == "0812"  # record 1 of the current EF
    assert raw(card, "00B2 0800 14")[:4] == "0812"  # tag 08
    assert raw(card, "00B2 0900 20").endswith("9000")  # tag 09, name
    assert raw(card, "00B2 0804 14") == "6A83"  # no record 8
    assert raw(card, "00B2 0105 14") == "6A86"  # bad P2 mode
    assert raw(card, "00B2 0104 05") == "6C14"  # wrong Le: the card says the right one
    assert raw(card, "00B0 0000 10") == "6981"  # READ BINARY on a record file
    assert raw(card, "00B2 013C 05") == "6981"  # SFI 7 (EF07) is transparent
    assert raw(card, "00B2 01FC 05") == "6A82"  # no file with SFI 31


def test_get_response_after_61xx(rig):
    card, client, _psam, _path = rig
    first = raw(card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
    assert first[:2] == "61"
    fci = raw(card, f"00C00000{first[2:]}")
    assert fci.endswith("9000") and "9F0C038601" in fci
    assert client.select_ssse() in (CardAlgorithm.SM4, CardAlgorithm.DES3)


def test_every_select_by_name_is_t0_case_3():
    """SELECT by name carries no Le: over T=0 its FCI comes as 61xx, then GET RESPONSE (the PKI
    DDF and ADF answered 9000 with data at once, which T=0 cannot carry)."""
    card = EmulatedCard(sample_card(CardProfile(generation=3)))
    card.power_on()
    for name in ("504B492EC9E7BBE1B1A3D5CF", "53532E434552542E41444631"):
        first = raw(card, f"00A40400{len(name) // 2:02X}{name}")
        assert first[:2] == "61" and len(first) == 4, first
        fci = raw(card, f"00C00000{first[2:]}")
        assert fci.startswith(f"6F{int(first[2:], 16) - 2:02X}84{len(name) // 2:02X}{name}")
        assert fci.endswith("9F0C038601039000") and len(fci) == 2 * int(first[2:], 16) + 4
    assert raw(card, "00C0000010") == "6985"  # nothing pending any more
    # with Le (case 4) the data comes at once
    assert raw(card, "00A404000C504B492EC9E7BBE1B1A3D5CF00").endswith("9000")


def test_psam_answers_t0_too():
    """The PSAM's encryption (80 FA, case 3) answers 61xx; GET RESPONSE gives the data, a
    wrong Le gets 6Cxx and the right one after it still works."""
    from sscard.emulator.psam import PSAM_DF01_AID, PSAM_SM4_NAME, EmulatedPsam

    psam = EmulatedPsam(make_test_psam())
    psam.power_on()

    def send(hex_apdu: str) -> str:
        return psam.process(bytes.fromhex(hex_apdu)).hex().upper()

    assert send(f"00A40400{len(PSAM_SM4_NAME):02X}{PSAM_SM4_NAME.hex()}") == "9000"
    assert send(f"00A4040006{PSAM_DF01_AID.hex()}") == "9000"
    assert send("BFDE0B0010" + "11" * 16) == "9000"
    assert send("80FA000010" + "22" * 16) == "6110"
    assert send("00C0000008") == "6C10"
    answer = send("00C0000010")
    assert len(answer) == 36 and answer.endswith("9000")
    assert send("00C0000010") == "6985"  # fetched once only
    assert send("80FA00001022222222222222222222222222222222" + "10").endswith("9000")  # Le


def test_psam_atr_carries_the_historical_bytes_it_announces():
    from smartcard.ATR import ATR

    from sscard.emulator.psam import PsamState

    state = make_test_psam()
    parsed = ATR(list(state.atr))
    assert parsed.K == 12 and len(parsed.getHistoricalBytes()) == 12
    assert len(state.atr) == 4 + 12  # TS T0 TB1 TC1 + 12 historical bytes
    # a state file written before the fix (8 of the 12 bytes) is completed on load
    legacy = PsamState.from_json(dict(state.to_json(), atr=state.atr[:12].hex()))
    assert len(legacy.atr) == 16 and legacy.atr[:12] == state.atr[:12]


def test_malformed_apdus(rig):
    card, *_ = rig
    assert raw(card, "00") == "6700"
    assert raw(card, "00A4040005 0102") == "6700"  # Lc 5 but 2 bytes
    assert raw(card, "11A4040000") == "6E00"
    assert raw(card, "0099000000") == "6D00"
    assert raw(card, "00A4000003 000500") == "6700"
    assert raw(card, "0084000007") == "6700"


def test_access_conditions(rig):
    card, client, psam, path = rig
    client.select_ssse()
    client.select_file(0x0007)
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        client.read_binary(0, 16)  # fingerprint needs the read key
    client.external_authenticate(KeyId.READ, psam)
    client.select_file(0x0007)
    assert client.read_binary(0, 16) == bytes(16)
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        client.update_binary(0, b"x")  # read key does not grant update
    client.select_file(0xDF03)
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        client.update_record(5, 1, Tlv(0x20, bytes(8)))
    before = path.read_bytes()
    assert raw(card, "00DC01 2C 03 0101 41") == "6982"
    assert path.read_bytes() == before  # refused writes change nothing


def test_external_authentication_counts_failures_and_blocks(rig):
    card, client, psam, _path = rig
    client.select_ssse()
    for left in (4, 3, 2, 1, 0):
        client.get_challenge()
        with pytest.raises(errors.AuthenticationFailed) as info:
            client.send(CommandApdu(0x00, 0x82, 0x00, 0x0B, bytes(8)), "EXTERNAL AUTHENTICATE")
        assert info.value.tries_left == left
    with pytest.raises(errors.KeyBlocked, match="6983"):
        client.external_authenticate(0x0B, psam)
    assert raw(card, "0082000B08" + "00" * 8) == "6983"
    assert raw(card, "0082000E08" + "00" * 8) == "6A88"  # no such key


def test_external_auth_needs_a_fresh_challenge(rig):
    card, client, psam, _path = rig
    client.select_ssse()
    ident = client.identity()
    challenge = client.get_challenge()
    cryptogram = psam.external_cryptogram(0x0B, ident, challenge)
    assert raw(card, "0082000B08" + cryptogram.hex()) == "9000"
    assert raw(card, "0082000B08" + cryptogram.hex()) == "6985"  # challenge used up


def test_key_service_and_psam_compute_the_same_cryptograms(rig):
    _card, client, psam, _path = rig
    client.select_ssse()
    ident = client.identity()
    keys = {int(k): provincial_test_key(k, "639900", ident.algorithm) for k in KeyId}
    service = KeyServiceAuthenticator(keys)
    challenge = bytes(range(8))
    assert service.external_cryptogram(0x0A, ident, challenge) == \
        psam.external_cryptogram(0x0A, ident, challenge)
    client.internal_authenticate(service)
    client.internal_authenticate(psam)
    client.external_authenticate(0x0B, service)
    header = bytes.fromhex("84240001")
    assert service.pin_command_data(0x0C, ident, challenge, header, "4321") == \
        psam.pin_command_data(0x0C, ident, challenge, header, "4321")


def test_counterfeit_card_fails_internal_authentication(rig):
    card, client, psam, _path = rig
    card.state.keys[KeyId.INTERNAL_AUTH] = bytes(16)  # not derived from the issuer's keys
    client.select_ssse()
    with pytest.raises(errors.AuthenticationFailed, match="not genuine"):
        client.internal_authenticate(psam)


def test_pin_counter_and_secure_messaging(rig):
    card, client, psam, _path = rig
    with pytest.raises(errors.WrongPin) as wrong:
        client.verify_pin("000000")
    assert wrong.value.tries_left == 2
    assert client.pin_tries_left() == 2
    client.verify_pin("123456")
    assert client.pin_tries_left() == 3
    client.change_pin("123456", "12345")
    with pytest.raises(errors.WrongPin):
        client.change_pin("123456", "777777")
    client.verify_pin("12345")
    # a bad MAC or a replayed command changes nothing
    ident = client.identity()
    challenge = client.get_challenge()
    data = psam.pin_command_data(0x0C, ident, challenge, bytes.fromhex("84240001"), "9999")
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    assert raw(card, "84240001" + f"{len(tampered):02X}" + tampered.hex()) == "9302"
    assert raw(card, "84240001" + f"{len(data):02X}" + data.hex()) == "6985"  # no challenge
    client.verify_pin("12345")
    client.reload_pin("2468", psam)
    client.verify_pin("2468")
    assert sample_card().pin == "123456"


def test_pki_application_end_to_end(rig):
    card, client, psam, _path = rig
    if card.state.generation < 3:
        with pytest.raises(errors.FileNotFound):
            client.select_pki()
        return
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        client.generate_signing_key()
    client.external_authenticate(KeyId.UPDATE, psam)
    with pytest.raises(errors.KeyNotFound):
        client.public_point()
    point = client.generate_signing_key()
    with pytest.raises(errors.WrongPin):
        client.verify_pki_pin("654321")
    client.verify_pki_pin("123456")
    e = bytes(range(32))
    rs = client.sign_digest(e)
    from sscard.card.keyhandle import der_signature

    SM2PublicKey.from_point(point).verify_digest(der_signature(rs), e)

    enc = SM2PrivateKey.generate()
    blob = wrap(enc, SM2PublicKey.from_point(point)).to_blob()
    assert len(blob) == BLOB_LEN == 388
    parsed = EnvelopedKey.from_blob(blob)
    assert parsed.public_point == enc.public_key().point
    client.import_enveloped_key(blob)
    assert client.public_point(0x0014) == enc.public_key().point

    # a blob for another card's key is refused and leaves the card's key as it was
    other = wrap(SM2PrivateKey.generate(), SM2PrivateKey.generate().public_key()).to_blob()
    with pytest.raises(errors.BadData, match="6984"):
        client.import_enveloped_key(other)
    assert client.public_point(0x0014) == enc.public_key().point


def test_envelope_parse_errors():
    blob = bytearray(wrap(SM2PrivateKey.generate(),
                          SM2PrivateKey.generate().public_key()).to_blob())
    with pytest.raises(EnvelopeError, match="388 bytes"):
        EnvelopedKey.from_blob(bytes(blob[:-1]))
    bad = bytearray(blob)
    bad[4] = 0x02
    with pytest.raises(EnvelopeError, match="SGD_SM4_ECB"):
        EnvelopedKey.from_blob(bytes(bad))
    bad = bytearray(blob)
    bad[0] = 2
    with pytest.raises(EnvelopeError, match="Version is 2"):
        EnvelopedKey.from_blob(bytes(bad))
    bad = bytearray(blob)
    bad[12] = 1
    with pytest.raises(EnvelopeError, match="cbEncryptedPriKey"):
        EnvelopedKey.from_blob(bytes(bad))


def test_blank_card_keys_follow_the_diversification_hierarchy():
    state = blank_card(CardProfile(generation=3), card_specific=bytes(range(8)))
    alg = CardAlgorithm.SM4
    root = root_test_key(0x0A, alg)
    expected = div.derive_key(root, [b"630000sh", b"639900sx", bytes(range(8))], alg)
    assert state.keys[0x0A] == expected


def test_data_dfs_open_with_the_pin_or_the_read_key(rig):
    card, client, psam, _path = rig
    client.select_ssse()
    client.select_file(0xDF03)  # social insurance
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        client.read_record(5, 1, 8)
    client.verify_pin("123456")
    client.select_ssse()
    client.select_file(0xDF03)
    assert client.read_record(5, 1, 8).tag == 0x20
    card.power_off()
    card.power_on()  # a reset forgets the PIN
    client.select_ssse()
    client.select_file(0xDF04)
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        client.read_record(5, 2, 16)
    client.external_authenticate(KeyId.READ, psam)
    client.select_file(0xDF04)
    assert client.read_record(5, 2, 16).tag == 0x21
    with pytest.raises(errors.FileNotFound):
        client.select_file(0xDF05)


def test_card_key_logs_in_again_after_a_reset(rig):
    card, client, psam, _path = rig
    if card.state.generation < 3:
        return
    from sscard.card.keyhandle import CardKey

    client.external_authenticate(KeyId.UPDATE, psam)
    point = client.generate_signing_key()
    pins: list[str] = []
    key = CardKey(client, lambda: pins.append("x") or "123456")
    key.sign(b"one")
    card.power_off()
    card.power_on()  # e.g. another program reset the card
    SM2PublicKey.from_point(point).verify(key.sign(b"two"), b"two")
    assert len(pins) == 2
