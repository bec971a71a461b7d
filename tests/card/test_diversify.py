"""Diversification and cryptograms, checked against independent implementations
(pyca/cryptography's TripleDES, the openssl command line's SM4)."""

import subprocess
import warnings

import pytest

from sscard.card import diversify as d
from sscard.card.diversify import CardAlgorithm

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
ATR = bytes.fromhex("3B6D000000814E4323869715990BF7C7A5")


def openssl_sm4_ecb(key: bytes, data: bytes) -> bytes:
    return subprocess.run(
        ["openssl", "enc", "-sm4-ecb", "-nopad", "-K", key.hex()], input=data,
        capture_output=True, check=True,
    ).stdout


def reference_3des(key: bytes, data: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
        from cryptography.hazmat.primitives.ciphers import Cipher, modes

        enc = Cipher(TripleDES(key), modes.ECB()).encryptor()
        return enc.update(data) + enc.finalize()


def test_factors():
    assert d.card_factor(ATR) == ATR[-8:]
    assert d.city_factor("639900") == b"639900sx"
    assert d.province_factor("63") == b"630000sh"
    assert d.province_factor("639900") == b"630000sh"
    with pytest.raises(ValueError, match="6 digits"):
        d.city_factor("6399")


def test_sm4_diversification_matches_openssl():
    factor = b"639900sx"
    inverted = bytes(b ^ 0xFF for b in factor)
    assert d.diversify(KEY, factor, CardAlgorithm.SM4) == openssl_sm4_ecb(KEY, factor + inverted)


def test_3des_diversification_matches_reference():
    factor = d.card_factor(ATR)
    inverted = bytes(b ^ 0xFF for b in factor)
    expected = reference_3des(KEY, factor) + reference_3des(KEY, inverted)
    assert d.diversify(KEY, factor, CardAlgorithm.DES3) == expected


def test_three_levels_and_card_key():
    alg = CardAlgorithm.SM4
    root = bytes(range(16))
    provincial = d.diversify(root, d.province_factor("63"), alg)
    per_card = d.derive_key(root, [b"630000sh", b"639900sx", ATR[-8:]], alg)
    assert d.card_key(provincial, "639900", ATR, alg) == per_card
    assert len({root, provincial, per_card}) == 3


def test_sm4_cryptogram_folds_halves():
    challenge = bytes.fromhex("1122334455667788")
    e = openssl_sm4_ecb(KEY, challenge + bytes(8))
    expected = bytes(a ^ b for a, b in zip(e[:8], e[8:], strict=True))
    assert d.external_auth_cryptogram(KEY, challenge, CardAlgorithm.SM4) == expected
    assert d.external_auth_cryptogram(KEY, challenge, CardAlgorithm.DES3) == reference_3des(
        KEY, challenge)


def test_sm4_mac_matches_openssl_cbc():
    iv = bytes.fromhex("0102030405060708")
    data = bytes.fromhex("8424000112") + bytes(range(18))
    padded = data + b"\x80" + bytes(-(len(data) + 1) % 16)
    cbc = subprocess.run(
        ["openssl", "enc", "-sm4-cbc", "-nopad", "-K", KEY.hex(), "-iv", (iv + bytes(8)).hex()],
        input=padded, capture_output=True, check=True,
    ).stdout
    last = cbc[-16:]
    folded = bytes(last[i] ^ last[4 + i] ^ last[8 + i] ^ last[12 + i] for i in range(4))
    assert d.mac(KEY, iv, data, CardAlgorithm.SM4) == folded


def test_bad_inputs():
    with pytest.raises(ValueError, match="16 bytes"):
        d.diversify(KEY[:8], b"12345678", CardAlgorithm.SM4)
    with pytest.raises(ValueError, match="factor must be 8 bytes"):
        d.diversify(KEY, b"1234", CardAlgorithm.DES3)
    with pytest.raises(ValueError, match="generation"):
        CardAlgorithm.for_generation(4)
    with pytest.raises(ValueError, match="padding"):
        d.parse_pin_block(bytes.fromhex("06123456FF000000"))


def test_pin_block_round_trip():
    for alg in CardAlgorithm:
        block = d.pin_block("12345", alg)
        assert len(block) % alg.block_size == 0
        assert d.parse_pin_block(block) == "12345"
