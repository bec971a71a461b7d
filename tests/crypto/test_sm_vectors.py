"""Standard vectors for SM2, SM3, HMAC-SM3 and SM4 from ../shared/conformance/sm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscard.crypto import hashes, sm2, sm4
from sscard.crypto.errors import DecryptionError, InvalidSignature
from tests.crypto.vectors import botan_vectors, evp_stanzas

SM_CURVE_OID = "1.2.156.10197.1.301"


@pytest.fixture(scope="module")
def sm(conformance: Path) -> Path:
    return conformance / "sm"


# --- SM3 -------------------------------------------------------------------------------------

def test_sm3_quick_fact() -> None:
    assert hashes.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_sm3_by_hashlib_is_cryptographys(data: bytes) -> None:
    """hashes.sm3 (hashlib where its OpenSSL has SM3) gives cryptography's digest."""
    assert hashes.sm3(data) == hashes.sm3_by_cryptography(data)


def test_sm3_tongsuo(sm: Path) -> None:
    stanzas = [s for s in evp_stanzas(sm / "tongsuo" / "evpmd_sm3.txt")
               if (s.get("Digest") or "").upper() == "SM3" and "Output" in s.fields]
    assert len(stanzas) >= 3
    for s in stanzas:
        assert hashes.sm3(s.hex("Input")).hex() == s.fields["Output"].lower()


def test_sm3_botan(sm: Path) -> None:
    entries = [e for e in botan_vectors(sm / "botan" / "sm3.vec") if "Out" in e]
    assert len(entries) >= 100
    for e in entries:
        assert hashes.sm3(bytes.fromhex(e.get("In", ""))).hex() == e["Out"].lower(), e


def test_hmac_sm3_gmt0042(sm: Path) -> None:
    stanzas = [s for s in evp_stanzas(sm / "tongsuo" / "evpmac_sm3.txt") if s.get("MAC")]
    assert len(stanzas) >= 3
    for s in stanzas:
        tag = hashes.hmac_sm3(s.hex("Key"), s.hex("Input"))
        assert tag.hex() == s.fields["Output"].lower()
        assert hashes.hmac_verify("sm3", s.hex("Key"), s.hex("Input"), tag)


# --- SM4 -------------------------------------------------------------------------------------

def test_sm4_quick_fact() -> None:
    k = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert sm4.ecb_encrypt(k, k).hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_botan_ecb(sm: Path) -> None:
    entries = [e for e in botan_vectors(sm / "botan" / "sm4.vec") if "Out" in e and "Key" in e]
    assert len(entries) >= 5
    for e in entries:
        key, pt, ct = (bytes.fromhex(e[k]) for k in ("Key", "In", "Out"))
        assert sm4.ecb_encrypt(key, pt) == ct
        assert sm4.ecb_decrypt(key, ct) == pt


def test_sm4_tongsuo_ecb_cbc_gcm(sm: Path) -> None:
    done = {"SM4-ECB": 0, "SM4-CBC": 0, "SM4-GCM": 0}
    for s in evp_stanzas(sm / "tongsuo" / "evpciph_sm4.txt"):
        mode = s.get("Cipher")
        if mode not in done:
            continue
        key, pt, ct = s.hex("Key"), s.hex("Plaintext"), s.hex("Ciphertext")
        if mode == "SM4-ECB":
            assert sm4.ecb_encrypt(key, pt) == ct
        elif mode == "SM4-CBC":
            iv = s.hex("IV")
            assert sm4.cbc_encrypt(key, iv, pt, pad=False) == ct
            assert sm4.cbc_decrypt(key, iv, ct, pad=False) == pt
        else:
            iv, aad, tag = s.hex("IV"), s.hex("AAD"), s.hex("Tag")
            assert sm4.gcm_encrypt(key, iv, pt, aad) == ct + tag
            assert sm4.gcm_decrypt(key, iv, ct + tag, aad) == pt
            with pytest.raises(DecryptionError, match="tag"):
                sm4.gcm_decrypt(key, iv, ct + bytes([tag[0] ^ 1]) + tag[1:], aad)
        done[mode] += 1
    assert all(done.values()), done


def test_sm4_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        sm4.ecb_encrypt(b"short", b"\0" * 16)
    with pytest.raises(ValueError, match="multiple of 16"):
        sm4.ecb_encrypt(b"\0" * 16, b"abc")
    k = b"\1" * 16
    ct = sm4.cbc_encrypt(k, b"\0" * 16, b"hello")
    assert sm4.cbc_decrypt(k, b"\0" * 16, ct) == b"hello"
    with pytest.raises(DecryptionError, match="padding"):
        sm4.cbc_decrypt(b"\2" * 16, b"\0" * 16, ct)


@pytest.mark.parametrize("nonce_len", [0, 1, 6, 7, 257])
def test_sm4_gcm_nonce_rules_are_ours(nonce_len: int) -> None:
    """1-7 and 257-byte nonces raised pyca/cryptography's raw ValueError."""
    with pytest.raises(sm4.ParameterError, match=f"8-256 bytes.*got {nonce_len}"):
        sm4.gcm_encrypt(b"\1" * 16, bytes(nonce_len), b"data")
    with pytest.raises(sm4.ParameterError, match="SM4-GCM nonce"):
        sm4.gcm_decrypt(b"\1" * 16, bytes(nonce_len), bytes(32))


def test_sm4_ccm_round_trip_and_rules() -> None:
    key, nonce = b"\1" * 16, bytes(range(12))
    sealed = sm4.ccm_encrypt(key, nonce, b"payload", b"header", tag_size=8)
    assert len(sealed) == len(b"payload") + 8
    assert sm4.ccm_decrypt(key, nonce, sealed, b"header", tag_size=8) == b"payload"
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), bytes([sealed[0] ^ 1]) + sealed[1:]):
        with pytest.raises(DecryptionError, match="tag mismatch"):
            sm4.ccm_decrypt(key, nonce, bad, b"header", tag_size=8)
    with pytest.raises(DecryptionError, match="tag mismatch"):
        sm4.ccm_decrypt(key, nonce, sealed, b"other header", tag_size=8)
    with pytest.raises(sm4.ParameterError, match="nonce must be 7-13 bytes, got 6"):
        sm4.ccm_encrypt(key, bytes(6), b"x")
    with pytest.raises(sm4.ParameterError, match="tag must be 4-16 bytes and even, got 5"):
        sm4.ccm_encrypt(key, nonce, b"x", tag_size=5)
    with pytest.raises(sm4.ParameterError, match="at most 65535 bytes"):
        sm4.ccm_encrypt(key, bytes(13), bytes(65536))


# --- SM2 -------------------------------------------------------------------------------------

def _tongsuo_json(sm: Path) -> dict:
    return json.loads((sm / "derived" / "sm2_tongsuo_internal_vectors.json").read_text())


def _std_curve(entry: dict) -> bool:
    return "sm2p256v1" in entry["curve"]


def test_gbt32918_annex_a_signature(sm: Path) -> None:
    """GB/T 32918.5 Annex A: verifies with the default ID and fails with another."""
    vec = next(v for v in _tongsuo_json(sm)["sign"] if _std_curve(v))
    assert vec["id"] == sm2.DEFAULT_UID.decode()
    key = sm2.SM2PrivateKey.from_private_value(int(vec["priv_hex"], 16))
    sig = sm2.SM2Signature({"r": int(vec["r_hex"], 16), "s": int(vec["s_hex"], 16)}).dump()
    msg = vec["msg_ascii"].encode()
    key.public_key().verify(sig, msg)
    with pytest.raises(InvalidSignature):
        key.public_key().verify(sig, msg, uid=b"ALICE123@YAHOO.COM")
    with pytest.raises(InvalidSignature):
        key.public_key().verify(sig, msg + b"!")


def test_gbt32918_annex_c_decrypts(sm: Path) -> None:
    vec = next(v for v in _tongsuo_json(sm)["encrypt"] if _std_curve(v))
    key = sm2.SM2PrivateKey.from_private_value(int(vec["priv_hex"], 16))
    ct = bytes.fromhex(next(v for k, v in vec.items() if k.startswith("ciphertext_der")))
    assert key.decrypt(ct) == b"encryption standard"
    raw = sm2.asn1_to_c1c3c2(ct)
    assert key.decrypt(raw, sm2.CipherFormat.C1C3C2) == b"encryption standard"


def test_test_curve_vectors_are_reported_unsupported(sm: Path) -> None:
    """The GB/T 32918 test-curve examples need explicit curve parameters, which OpenSSL's SM2
    refuses; the same algorithms are covered on sm2p256v1 above. Count them so the gap shows."""
    data = _tongsuo_json(sm)
    other = [v for v in data["sign"] + data["encrypt"] if not _std_curve(v)]
    print(f"SM2 test-curve vectors not run (explicit curve unsupported): {len(other)}")
    assert len(other) == len(data["sign"]) + len(data["encrypt"]) - 2


def test_botan_sm2_signatures_standard_curve(sm: Path) -> None:
    entries = [e for e in botan_vectors(sm / "botan" / "sm2_sig.vec") if "Signature" in e]
    std = [e for e in entries if e.get("Oid") == SM_CURVE_OID and e.get("Hash") == "SM3"]
    skipped = len(entries) - len(std)
    print(f"botan sm2_sig: {len(std)} run on sm2p256v1/SM3, {skipped} on other curves or hashes")
    assert std
    for e in std:
        key = sm2.SM2PrivateKey.from_private_value(int(e["x"], 16))
        raw = bytes.fromhex(e["Signature"])
        sig = sm2.SM2Signature({"r": int.from_bytes(raw[:32], "big"),
                                "s": int.from_bytes(raw[32:], "big")}).dump()
        uid = e["Ident"].encode()
        key.public_key().verify(sig, bytes.fromhex(e["Msg"]), uid=uid)
        with pytest.raises(InvalidSignature):
            key.public_key().verify(sig, bytes.fromhex(e["Msg"]))  # default ID: must fail


def test_botan_sm2_invalid_ciphertexts_all_rejected(sm: Path) -> None:
    entries = [e for e in botan_vectors(sm / "botan" / "sm2_invalid.vec") if "Ctext" in e]
    assert len(entries) == 20
    key_hex = next(e["Key"] for e in botan_vectors(sm / "botan" / "sm2_invalid.vec") if "Key" in e)
    key = sm2.SM2PrivateKey.from_private_value(int(key_hex, 16))
    for e in entries:
        with pytest.raises(DecryptionError) as info:
            key.decrypt(bytes.fromhex(e["Ctext"]))
        assert "SM2" in str(info.value)


def test_tongsuo_evp_sm2(sm: Path) -> None:
    """Pre-hashed verification (e = SM3(Z||M)) and GM/T 0009 decryption from Tongsuo's evp_test."""
    from sscard.crypto.asymmetric import PrivateKey

    stanzas = evp_stanzas(sm / "tongsuo" / "evppkey_sm2.txt")
    keys = {s.fields["PrivateKey"]: s.pem for s in stanzas if "PrivateKey" in s.fields}
    verified = decrypted = 0
    for s in stanzas:
        if "Verify" in s.fields and s.get("Ctrl") == "digest:SM3" and not s.get("Result"):
            k = PrivateKey.from_encrypted(keys[s.fields["Verify"]].encode(), b"")
            k.raw.public_key().verify_digest(s.hex("Output"), s.hex("Input"))
            with pytest.raises(InvalidSignature):
                k.raw.public_key().verify_digest(s.hex("Output"), bytes(32))
            verified += 1
        elif "Decrypt" in s.fields and not s.get("Result"):
            k = PrivateKey.from_encrypted(keys[s.fields["Decrypt"]].encode(), b"")
            assert k.decrypt(s.hex("Input")) == s.hex("Output")
            decrypted += 1
    assert verified >= 2 and decrypted >= 3, (verified, decrypted)


def test_sm2_round_trips_and_formats() -> None:
    key = sm2.SM2PrivateKey.generate()
    pub = key.public_key()
    for msg in (b"x", b"\0" * 1000):
        for fmt in sm2.CipherFormat:
            assert key.decrypt(pub.encrypt(msg, fmt), fmt) == msg
    sig = key.sign(b"doc", uid=b"alice")
    pub.verify(sig, b"doc", uid=b"alice")
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"doc")
    e = sm2.signature_digest(pub.point, b"doc")
    pub.verify(key.sign_digest(e), b"doc")
    assert sm2.SM2PrivateKey.from_pkcs8(key.pkcs8_der()).public_key() == pub
    assert sm2.SM2PrivateKey.from_private_value(key.private_value()).public_key() == pub
    assert sm2.SM2PublicKey.from_spki(pub.spki_der()) == pub


def test_sm2_one_key_signs_from_many_threads() -> None:
    """The signing context is kept per thread: signatures made at once from several threads
    with one key (a CA's workers) all verify, over their own message and no other."""
    from concurrent.futures import ThreadPoolExecutor

    key = sm2.SM2PrivateKey.generate()
    pub = key.public_key()
    messages = [f"tbs {i}".encode() * 20 for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        signatures = list(pool.map(key.sign, messages))
    for msg, sig in zip(messages, signatures, strict=True):
        pub.verify(sig, msg)
    with pytest.raises(InvalidSignature):
        pub.verify(signatures[0], messages[1])
    with pytest.raises(ValueError, match="32 bytes"):
        key.sign_digest(bytes(31))


def test_sm2_bad_inputs_are_named() -> None:
    key = sm2.SM2PrivateKey.generate()
    with pytest.raises(DecryptionError, match="C1C3C2"):
        key.decrypt(b"\x04short", sm2.CipherFormat.C1C3C2)
    with pytest.raises(DecryptionError, match="SM2Cipher"):
        key.decrypt(b"\x30\x03\x02\x01\x01")
    with pytest.raises(InvalidSignature):
        key.public_key().verify(b"\x30\x00", b"m")
    with pytest.raises(sm2.InvalidKey, match="65-byte"):
        sm2.SM2PublicKey.from_point(b"\x04" + bytes(10))
    with pytest.raises(sm2.InvalidKey, match="out of range"):
        sm2.SM2PrivateKey.from_private_value(0)
    with pytest.raises(ValueError, match="empty"):
        key.public_key().encrypt(b"")


def test_sm2_point_import_alternating_good_and_bad_points_from_threads() -> None:
    """Points are imported through a context kept per thread: in 8 threads at once, every
    point off the curve is refused and every good point read as itself, whatever came
    before it in that thread (attack: an invalid-curve key slipped in after a good one, or a
    refused one that leaves the context broken for the next caller)."""
    from concurrent.futures import ThreadPoolExecutor

    keys = [sm2.SM2PrivateKey.generate().public_key() for _ in range(16)]

    def import_both(pub: sm2.SM2PublicKey) -> bool:
        off = bytearray(pub.point)
        off[-1] ^= 0x01
        try:
            sm2.SM2PublicKey.from_point(bytes(off))
        except sm2.InvalidKey:
            pass
        else:
            return False
        return sm2.SM2PublicKey.from_point(pub.point) == pub

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(import_both, keys * 10))


def test_sm2_public_key_off_the_curve_is_refused() -> None:
    """The SubjectPublicKeyInfo of an SM2 key is read from its point (EVP_PKEY_fromdata), not
    through OpenSSL's DER decoder: a point off the curve is refused all the same, and a
    SubjectPublicKeyInfo in another encoding still goes through the decoder."""
    key = sm2.SM2PrivateKey.generate()
    pub = key.public_key()
    off = bytearray(pub.point)
    off[-1] ^= 0x01
    with pytest.raises(sm2.InvalidKey, match="not on curve"):
        sm2.SM2PublicKey.from_point(bytes(off))
    with pytest.raises(sm2.InvalidKey, match="not on curve"):
        sm2.SM2PublicKey.from_spki(sm2._spki_der(bytes(off)))
    with pytest.raises(sm2.InvalidKey):
        sm2.SM2PublicKey.from_point(b"\x04" + bytes(64))  # the point at infinity's coordinates
    # a compressed point in the SubjectPublicKeyInfo: not the fixed layout, so decoded by OpenSSL
    x, y = pub.point[1:33], pub.point[33:]
    compressed = sm2._spki_der(bytes([2 + (y[-1] & 1)]) + x)
    sm2.SM2PublicKey.from_spki(compressed).verify(key.sign(b"m"), b"m")
