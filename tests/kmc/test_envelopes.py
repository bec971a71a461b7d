"""GM/T 0009 SM2EnvelopedKey and GM/T 0016 ENVELOPEDKEYBLOB: round trips, layout, bad input."""

from __future__ import annotations

import struct
import subprocess

import pytest

from sscard.crypto import envelopes, sm4
from sscard.crypto.asymmetric import PrivateKey
from sscard.crypto.sm2 import CipherFormat, SM2PrivateKey
from sscard.keys.software import SoftwareKey


@pytest.fixture(scope="module")
def keys() -> tuple[SM2PrivateKey, SM2PrivateKey]:
    return SM2PrivateKey.generate(), SM2PrivateKey.generate()


def test_both_forms_unwrap_to_the_enveloped_key(keys: tuple[SM2PrivateKey, SM2PrivateKey]) -> None:
    enc, card = keys
    env = envelopes.wrap(enc, card.public_key())
    for data in (env.to_der(), env.to_blob()):
        got = envelopes.unwrap(data, card)
        assert got.private_value() == enc.private_value()
        assert got.public_key().point == enc.public_key().point


def test_unwrap_through_a_key_handle(keys: tuple[SM2PrivateKey, SM2PrivateKey]) -> None:
    enc, card = keys
    handle = SoftwareKey(PrivateKey(card))
    env = envelopes.wrap(enc, card.public_key())
    assert envelopes.unwrap(env.to_der(), handle).private_value() == enc.private_value()


def test_blob_layout_matches_card_spec(keys: tuple[SM2PrivateKey, SM2PrivateKey]) -> None:
    enc, card = keys
    session = bytes(range(16))
    blob = envelopes.wrap(enc, card.public_key(), session_key=session).to_blob()
    assert len(blob) == 388
    assert struct.unpack_from("<III", blob, 0) == (1, 0x401, 256)
    # cbEncryptedPriKey: 32 zero bytes then SM4-ECB(session, d)
    assert blob[12:44] == bytes(32)
    assert blob[44:76] == sm4.ecb_encrypt(session, enc.private_value().to_bytes(32, "big"))
    assert struct.unpack_from("<I", blob, 76)[0] == 256
    point = enc.public_key().point
    assert blob[80:112] == bytes(32) and blob[112:144] == point[1:33]
    assert blob[144:176] == bytes(32) and blob[176:208] == point[33:]
    # ECCCipherBlob: C1 x,y right-aligned, HASH, CipherLen = 16, Cipher
    c1c3c2 = b"\x04" + blob[240:272] + blob[304:336] + blob[336:368] + blob[372:388]
    assert struct.unpack_from("<I", blob, 368)[0] == 16
    assert card.decrypt(c1c3c2, CipherFormat.C1C3C2) == session


def test_der_is_readable_by_openssl(keys: tuple[SM2PrivateKey, SM2PrivateKey]) -> None:
    enc, card = keys
    der = envelopes.wrap(enc, card.public_key()).to_der()
    out = subprocess.run(["openssl", "asn1parse", "-inform", "DER"], input=der,
                         capture_output=True, check=True).stdout.decode()
    assert "1.2.156.10197.1.104.1" in out or "sm4-ecb" in out.lower()
    assert out.count("BIT STRING") == 2


def test_wrong_recipient_is_refused(keys: tuple[SM2PrivateKey, SM2PrivateKey]) -> None:
    enc, card = keys
    env = envelopes.wrap(enc, card.public_key())
    with pytest.raises(envelopes.EnvelopeError, match="session key"):
        envelopes.unwrap(env, SM2PrivateKey.generate())


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, struct.pack("<I", 2), "Version"),
        (4, struct.pack("<I", 0x402), "ulSymmAlgID"),
        (8, struct.pack("<I", 128), "ulBits"),
        (12, b"\x01", "cbEncryptedPriKey"),
        (76, struct.pack("<I", 512), "BitLen"),
        (368, struct.pack("<I", 17), "CipherLen"),
    ],
)
def test_malformed_blob_names_the_field(
    keys: tuple[SM2PrivateKey, SM2PrivateKey], offset: int, value: bytes, message: str
) -> None:
    enc, card = keys
    blob = bytearray(envelopes.wrap(enc, card.public_key()).to_blob())
    blob[offset:offset + len(value)] = value
    with pytest.raises(envelopes.EnvelopeError, match=message):
        envelopes.unwrap(bytes(blob), card)


def test_truncated_and_tampered_inputs(keys: tuple[SM2PrivateKey, SM2PrivateKey]) -> None:
    enc, card = keys
    env = envelopes.wrap(enc, card.public_key())
    with pytest.raises(envelopes.EnvelopeError, match="388"):
        envelopes.parse(env.to_blob()[:-1])
    with pytest.raises(envelopes.EnvelopeError, match="SM2EnvelopedKey"):
        envelopes.parse(env.to_der()[:-3])
    # a private key that does not match the public key is caught
    other = envelopes.wrap(SM2PrivateKey.generate(), card.public_key())
    mixed = envelopes.EnvelopedKey(env.session_key_c1c3c2, other.public_point,
                                   env.encrypted_private_key)
    with pytest.raises(envelopes.EnvelopeError, match="does not match"):
        envelopes.unwrap(mixed, card)
    # a flipped bit in the session-key ciphertext fails the C3 check
    bad = bytearray(env.session_key_c1c3c2)
    bad[-1] ^= 1
    with pytest.raises(envelopes.EnvelopeError):
        envelopes.unwrap(envelopes.EnvelopedKey(bytes(bad), env.public_point,
                                                env.encrypted_private_key), card)


def test_mutated_envelopes_fail_only_with_envelope_errors(
    keys: tuple[SM2PrivateKey, SM2PrivateKey],
) -> None:
    """Any byte changed, any truncation, random input: a precise EnvelopeError or (where the
    change leaves the structure valid) the right key, never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    enc, card = keys
    env = envelopes.wrap(enc, card.public_key())
    forms = [env.to_blob(), env.to_der()]

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(which=st.integers(0, 1), pos=st.integers(0, 387), value=st.integers(0, 255),
           cut=st.integers(0, 400), junk=st.binary(max_size=400))
    def check(which: int, pos: int, value: int, cut: int, junk: bytes) -> None:
        data = bytearray(forms[which])
        data[pos % len(data)] = value
        for candidate in (bytes(data), bytes(data[:cut]), junk, b"\x30" + junk):
            try:
                got = envelopes.unwrap(candidate, card)
            except envelopes.EnvelopeError:
                continue
            assert got.private_value() == enc.private_value()

    check()
