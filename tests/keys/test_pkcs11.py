"""PKCS#11 key handles against a real SoftHSM2 token that the tests initialise themselves.

Signatures are checked by our verifier and by the openssl command line; ciphertexts come from our
encryptor and from ``openssl pkeyutl``.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pkcs11
import pytest
from asn1crypto import algos as asn1algos

from sscard.crypto.algorithms import EncryptionScheme, KeyAlgorithm, SignatureAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import DecryptionError, InvalidSignature, UnsupportedAlgorithm
from sscard.keys.base import KeyHandle, OperationNotSupported
from sscard.keys.pkcs11 import (
    DuplicateKey,
    KeyNotFound,
    PinError,
    Pkcs11Error,
    Pkcs11Key,
    Pkcs11Token,
    TokenNotFound,
    reinitialize_module,
)
from tests.keys.conftest import run_openssl, unique
from tests.softhsm import SoftHsmToken, create_token

MESSAGE = "社会保障卡 signed on a token".encode()
S = SignatureAlgorithm


def _openssl_verify(openssl: str, tmp: Path, key: Pkcs11Key, sig: bytes, digest: str,
                    *sigopts: str) -> None:
    (tmp / "pub.pem").write_bytes(key.public_key().spki_pem())
    (tmp / "data").write_bytes(MESSAGE)
    (tmp / "sig").write_bytes(sig)
    opts: list[str] = []
    for o in sigopts:
        opts += ["-sigopt", o]
    out = run_openssl(openssl, "dgst", f"-{digest}", *opts, "-verify", tmp / "pub.pem",
                      "-signature", tmp / "sig", tmp / "data")
    assert b"Verified OK" in out


# -- generation and lookup ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.RSA3072, KeyAlgorithm.RSA4096,
                                       KeyAlgorithm.EC_P384])
def test_generate_then_find_by_label_and_by_id(token: Pkcs11Token,
                                               algorithm: KeyAlgorithm) -> None:
    label = unique(algorithm.value)
    key = token.generate_key(algorithm, label, key_id=bytes.fromhex("c0ffee") + label.encode())
    assert isinstance(key, KeyHandle)
    assert key.algorithm is algorithm
    assert key.public_key().algorithm is algorithm
    by_label = token.find_key(label=label)
    by_id = token.find_key(key_id=key.key_id)
    assert by_label.key_id == by_id.key_id == key.key_id
    assert by_label.public_key() == by_id.public_key() == key.public_key()
    assert by_id.key_label == label
    # the public key we built from the token's attributes is the one the private key signs for
    sig = by_label.sign(MESSAGE)
    key.public_key().verify(sig, MESSAGE)


def test_private_keys_are_sensitive_and_not_extractable(token: Pkcs11Token,
                                                        rsa_key: Pkcs11Key) -> None:
    info = next(k for k in token.list_keys()
                if k.object_class == "private" and k.key_id == rsa_key.key_id)
    assert info.extractable is False
    assert (info.key_type, info.size) == ("rsa", 2048)
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        token.run(lambda s: s.get_key(pkcs11.ObjectClass.PRIVATE_KEY, id=rsa_key.key_id)[
            pkcs11.Attribute.PRIVATE_EXPONENT])


def test_list_keys_reports_type_size_and_id(token: Pkcs11Token, rsa_key: Pkcs11Key,
                                            ec256_key: Pkcs11Key) -> None:
    rows = {(k.object_class, k.key_id): k for k in token.list_keys()}
    ec = rows[("private", ec256_key.key_id)]
    assert (ec.label, ec.key_type, ec.size, ec.curve) == (ec256_key.key_label, "ec", 256,
                                                          "secp256r1")
    assert rows[("public", rsa_key.key_id)].size == 2048


def test_duplicate_label_is_refused_and_creates_nothing(token: Pkcs11Token,
                                                        ec256_key: Pkcs11Key) -> None:
    before = len(token.list_keys())
    with pytest.raises(DuplicateKey, match=ec256_key.key_label):
        token.generate_key("ec-p256", ec256_key.key_label)
    assert len(token.list_keys()) == before


def test_missing_key_label_and_id_give_clear_errors(token: Pkcs11Token) -> None:
    with pytest.raises(KeyNotFound, match=r"no private key with label 'no-such-key'"):
        token.find_key(label="no-such-key")
    with pytest.raises(KeyNotFound, match=r"id 0badf00d"):
        token.find_key(key_id=bytes.fromhex("0badf00d"))


def test_sm2_generation_names_the_missing_mechanism(token: Pkcs11Token) -> None:
    assert not any(m >= 0x80000000 for m in token.mechanisms)  # SoftHSM2 has no vendor SM2
    before = len(token.list_keys())
    with pytest.raises(OperationNotSupported, match=r"CKM_SM2") as info:
        token.generate_key("sm2", unique("sm2"))
    assert "none vendor-defined" in str(info.value)
    assert len(token.list_keys()) == before


def test_ed25519_generation_is_refused(token: Pkcs11Token) -> None:
    with pytest.raises(OperationNotSupported, match="Ed25519"):
        token.generate_key("ed25519", unique("ed"))


# -- RSA signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", [S.RSA_PKCS1_SHA256, S.RSA_PKCS1_SHA384, S.RSA_PKCS1_SHA512])
def test_rsa_pkcs1_signature_verifies_here_and_in_openssl(
    rsa_key: Pkcs11Key, alg: SignatureAlgorithm, openssl_bin: str, tmp_path: Path
) -> None:
    sig = rsa_key.sign(MESSAGE, alg)
    assert len(sig) == 256
    rsa_key.public_key().verify(sig, MESSAGE, alg)
    _openssl_verify(openssl_bin, tmp_path, rsa_key, sig, str(alg.hash_name))
    with pytest.raises(InvalidSignature):
        rsa_key.public_key().verify(sig, MESSAGE + b"!", alg)


@pytest.mark.parametrize("alg", [S.RSA_PSS_SHA256, S.RSA_PSS_SHA384])
def test_rsa_pss_signature_verifies_here_and_in_openssl(
    rsa_key: Pkcs11Key, alg: SignatureAlgorithm, openssl_bin: str, tmp_path: Path
) -> None:
    sig = rsa_key.sign(MESSAGE, alg)
    rsa_key.public_key().verify(sig, MESSAGE, alg)
    salt = {"sha256": 32, "sha384": 48}[str(alg.hash_name)]
    _openssl_verify(openssl_bin, tmp_path, rsa_key, sig, str(alg.hash_name),
                    "rsa_padding_mode:pss", f"rsa_pss_saltlen:{salt}",
                    f"rsa_mgf1_md:{alg.hash_name}")
    assert rsa_key.sign(MESSAGE, alg) != sig  # PSS is randomised: a fresh salt each time


def test_local_hashing_gives_the_same_signatures(softhsm_token: SoftHsmToken,
                                                 rsa_key: Pkcs11Key, ec256_key: Pkcs11Key) -> None:
    """CKM_RSA_PKCS over our DigestInfo equals CKM_SHA256_RSA_PKCS (PKCS#1 v1.5 is
    deterministic); CKM_RSA_PKCS_PSS over our digest verifies like the combined mechanism."""
    with Pkcs11Token(softhsm_token.label, softhsm_token.user_pin.encode(),
                     softhsm_token.module, hash_on_token=False) as local:
        key = local.find_key(key_id=rsa_key.key_id)
        for alg in (S.RSA_PKCS1_SHA256, S.RSA_PKCS1_SHA512):
            assert key.sign(MESSAGE, alg) == rsa_key.sign(MESSAGE, alg)
        key.public_key().verify(key.sign(MESSAGE, S.RSA_PSS_SHA256), MESSAGE, S.RSA_PSS_SHA256)
        ec = local.find_key(key_id=ec256_key.key_id)
        ec.public_key().verify(ec.sign(MESSAGE), MESSAGE)


# -- ECDSA -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "alg", "size"), [
    ("ec256_key", S.ECDSA_SHA256, 32),
    ("ec384_key", S.ECDSA_SHA384, 48),
    ("ec256_key", S.ECDSA_SHA512, 32),  # a hash longer than the order: truncated per X9.62
])
def test_ecdsa_signature_is_der_and_verifies_here_and_in_openssl(
    request: pytest.FixtureRequest, fixture: str, alg: SignatureAlgorithm, size: int,
    openssl_bin: str, tmp_path: Path
) -> None:
    key: Pkcs11Key = request.getfixturevalue(fixture)
    sig = key.sign(MESSAGE, alg)
    parsed = asn1algos.DSASignature.load(sig, strict=True)  # DER SEQUENCE {r, s}, not r||s
    assert 0 < parsed["r"].native < 2 ** (8 * size)
    assert 0 < parsed["s"].native < 2 ** (8 * size)
    key.public_key().verify(sig, MESSAGE, alg)
    _openssl_verify(openssl_bin, tmp_path, key, sig, str(alg.hash_name))
    with pytest.raises(InvalidSignature):
        key.public_key().verify(sig, MESSAGE[:-1], alg)


def test_signature_algorithm_must_fit_the_key(rsa_key: Pkcs11Key, ec256_key: Pkcs11Key) -> None:
    with pytest.raises(UnsupportedAlgorithm, match="ECDSA_SHA256 does not fit a rsa2048 key"):
        rsa_key.sign(MESSAGE, S.ECDSA_SHA256)
    with pytest.raises(UnsupportedAlgorithm, match="does not fit a ec-p256 key"):
        ec256_key.sign(MESSAGE, S.RSA_PSS_SHA256)


def test_certificate_signed_by_token_key_passes_openssl_verify(
    ec256_key: Pkcs11Key, openssl_bin: str, tmp_path: Path
) -> None:
    """The key handle plugs into the X.509 builder like a software key."""
    from sscard.x509.builder import CertificateBuilder
    from sscard.x509.names import parse_name
    from sscard.x509.pem import der_to_pem

    name = parse_name("CN=HSM 测试根,O=社会保障,C=CN")
    now = dt.datetime.now(dt.UTC)
    cert = (CertificateBuilder().subject(name).issuer(name)
            .public_key(ec256_key.public_key()).serial_number(0x5EC0DE)
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension("basic_constraints", {"ca": True}, critical=True)
            .sign(ec256_key))
    pem = tmp_path / "root.pem"
    pem.write_bytes(der_to_pem(cert.dump(), "CERTIFICATE"))
    out = run_openssl(openssl_bin, "verify", "-CAfile", pem, pem)
    assert b": OK" in out


# -- RSA decryption ----------------------------------------------------------------------------


def test_oaep_sha1_decrypts_our_ciphertext_and_openssls(
    rsa_key: Pkcs11Key, openssl_bin: str, tmp_path: Path
) -> None:
    secret = b"session key 0123456789abcdef"
    ours = rsa_key.public_key().encrypt(secret, EncryptionScheme.RSA_OAEP_SHA1)
    assert rsa_key.decrypt(ours, EncryptionScheme.RSA_OAEP_SHA1) == secret
    (tmp_path / "pub.pem").write_bytes(rsa_key.public_key().spki_pem())
    theirs = run_openssl(openssl_bin, "pkeyutl", "-encrypt", "-pubin", "-inkey",
                         tmp_path / "pub.pem", "-pkeyopt", "rsa_padding_mode:oaep",
                         "-pkeyopt", "rsa_oaep_md:sha1", data=secret)
    assert rsa_key.decrypt(theirs, EncryptionScheme.RSA_OAEP_SHA1) == secret


def test_oaep_sha256_decrypts_or_names_what_the_token_refused(
    rsa_key: Pkcs11Key, openssl_bin: str, tmp_path: Path
) -> None:
    """SoftHSM2 2.6 takes OAEP with SHA-1 only; newer tokens take SHA-256. Either the
    plaintext comes back exactly, or the error names the mechanism and its parameters."""
    secret = b"oaep sha-256"
    (tmp_path / "pub.pem").write_bytes(rsa_key.public_key().spki_pem())
    theirs = run_openssl(openssl_bin, "pkeyutl", "-encrypt", "-pubin", "-inkey",
                         tmp_path / "pub.pem", "-pkeyopt", "rsa_padding_mode:oaep",
                         "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256",
                         data=secret)
    for ciphertext in (theirs, rsa_key.public_key().encrypt(secret)):
        try:
            assert rsa_key.decrypt(ciphertext) == secret  # default scheme: OAEP-SHA256
        except OperationNotSupported as exc:
            assert "CKM_RSA_PKCS_OAEP" in str(exc)
            assert "CKM_SHA256" in str(exc)


def test_pkcs1v15_decryption(rsa_key: Pkcs11Key) -> None:
    ct = rsa_key.public_key().encrypt(b"legacy", EncryptionScheme.RSA_PKCS1V15)
    assert rsa_key.decrypt(ct, EncryptionScheme.RSA_PKCS1V15) == b"legacy"


def test_corrupt_ciphertext_is_a_decryption_error(rsa_key: Pkcs11Key) -> None:
    ct = bytearray(rsa_key.public_key().encrypt(b"x", EncryptionScheme.RSA_OAEP_SHA1))
    ct[-1] ^= 1
    with pytest.raises(DecryptionError, match="corrupt"):
        rsa_key.decrypt(bytes(ct), EncryptionScheme.RSA_OAEP_SHA1)
    with pytest.raises((DecryptionError, Pkcs11Error)):
        rsa_key.decrypt(b"\x01" * 17, EncryptionScheme.RSA_OAEP_SHA1)  # wrong length
    with pytest.raises(UnsupportedAlgorithm):
        rsa_key.decrypt(b"\x01" * 256, EncryptionScheme.SM2)


def test_ec_key_cannot_decrypt(ec256_key: Pkcs11Key) -> None:
    with pytest.raises(OperationNotSupported, match="cannot decrypt"):
        ec256_key.decrypt(b"\x00" * 64)


# -- login, tokens, sessions -------------------------------------------------------------------


def test_wrong_pin_on_a_fresh_token_is_refused_by_the_token(softhsm_token: SoftHsmToken) -> None:
    fresh = create_token(unique("pin")[:32])
    with pytest.raises(PinError, match=f"wrong PIN for token '{fresh.label}'"):
        Pkcs11Token(fresh.label, b"00000000", fresh.module)
    with Pkcs11Token(fresh.label, fresh.user_pin.encode(), fresh.module) as tok:
        assert tok.list_keys() == []


def test_wrong_pin_while_logged_in_elsewhere_in_the_process(token: Pkcs11Token,
                                                            softhsm_token: SoftHsmToken) -> None:
    # the token skips the PIN check for a second login in one process: we must not
    with pytest.raises(PinError, match="wrong PIN"):
        Pkcs11Token(softhsm_token.label, b"not-the-pin", softhsm_token.module)
    with Pkcs11Token(softhsm_token.label, softhsm_token.user_pin.encode(),
                     softhsm_token.module) as second:
        assert second.list_keys() == token.list_keys()


def test_pin_is_never_in_repr(token: Pkcs11Token, softhsm_token: SoftHsmToken,
                              rsa_key: Pkcs11Key) -> None:
    for text in (repr(token), repr(rsa_key), str(rsa_key.label)):
        assert softhsm_token.user_pin not in text


def test_unknown_token_and_module_give_clear_errors(softhsm_token: SoftHsmToken,
                                                    tmp_path: Path) -> None:
    with pytest.raises(TokenNotFound, match=rf"no token labelled 'nope'.*{softhsm_token.label}"):
        Pkcs11Token("nope", b"1234", softhsm_token.module)
    with pytest.raises(Pkcs11Error, match="does not exist"):
        Pkcs11Token("x", b"1234", tmp_path / "missing.so")
    not_a_library = tmp_path / "fake.so"
    not_a_library.write_bytes(b"not an ELF file")
    with pytest.raises(Pkcs11Error, match="cannot load PKCS#11 module"):
        Pkcs11Token("x", b"1234", not_a_library)


def test_handles_survive_a_library_reinitialisation(token: Pkcs11Token,
                                                    ec256_key: Pkcs11Key,
                                                    softhsm_token: SoftHsmToken) -> None:
    """C_Finalize/C_Initialize invalidates every session and object handle; the token
    reopens and logs in again, the key finds its object again by CKA_ID."""
    before = token.generation
    reinitialize_module(softhsm_token.module)
    sig = ec256_key.sign(MESSAGE)
    ec256_key.public_key().verify(sig, MESSAGE)
    assert token.generation == before + 1


def test_concurrent_signing_from_threads_is_serialised(rsa_key: Pkcs11Key,
                                                       ec256_key: Pkcs11Key) -> None:
    errors: list[BaseException] = []
    results: list[tuple[Pkcs11Key, bytes, bytes]] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for i in range(15):
                key = rsa_key if (n + i) % 2 else ec256_key
                data = f"thread {n} message {i}".encode()
                sig = key.sign(data)
                with lock:
                    results.append((key, data, sig))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 60
    for key, data, sig in results:
        key.public_key().verify(sig, data)


def test_public_key_is_the_library_type(rsa_key: Pkcs11Key) -> None:
    pub = rsa_key.public_key()
    assert isinstance(pub, PublicKey)
    assert PublicKey.from_spki(pub.spki_der()) == pub


def test_key_made_by_another_tool_without_an_id_is_found_by_label(token: Pkcs11Token) -> None:
    label = unique("no-id")
    token.run(lambda s: s.generate_keypair(
        pkcs11.KeyType.EC, label=label, store=True,
        public_template={pkcs11.Attribute.EC_PARAMS:
                         pkcs11.util.ec.encode_named_curve_parameters("secp256r1")}))
    key = token.find_key(label=label)
    assert key.key_id == b""
    assert key.algorithm is KeyAlgorithm.EC_P256
    token.reopen()  # forces the handle to look its object up again, by label this time
    key.public_key().verify(key.sign(MESSAGE), MESSAGE)


def test_closed_token_reopens_on_use(softhsm_token: SoftHsmToken) -> None:
    tok = Pkcs11Token.open_with_pin_from(softhsm_token.label, softhsm_token.module,
                                         pin_file=softhsm_token.pin_file)
    key = tok.generate_key("ec-p256", unique("reopen"))
    tok.close()
    key.public_key().verify(key.sign(MESSAGE), MESSAGE)
    tok.close()


def test_sm2_curve_key_on_the_token_is_recognised_but_not_signed_with_ecdsa(
    token: Pkcs11Token,
) -> None:
    """SoftHSM2 will make an EC key on the SM2 curve through CKM_EC_KEY_PAIR_GEN, but it can
    only do ECDSA with it, which is not an SM2 signature: the handle must refuse, not fake it."""
    label = unique("sm2-curve")
    token.run(lambda s: s.generate_keypair(
        pkcs11.KeyType.EC, label=label, id=label.encode(), store=True,
        public_template={pkcs11.Attribute.EC_PARAMS:
                         pkcs11.util.ec.encode_named_curve_parameters("1.2.156.10197.1.301")}))
    key = token.find_key(label=label)
    assert key.algorithm is KeyAlgorithm.SM2
    assert key.public_key().algorithm is KeyAlgorithm.SM2
    with pytest.raises(OperationNotSupported, match=r"cannot sign with SM2 .*CKM_SM2"):
        key.sign(MESSAGE)
