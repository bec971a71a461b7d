"""Every Wycheproof file in ../shared/conformance/wycheproof through the sscard.crypto API.

Each file is one test; it prints (and records as a junit property) its counts. A vector
passes when: "valid" is accepted with the expected output; "invalid" is refused with one of our
module's errors (a CryptoError); "acceptable" either way, counted per flag (see ACCEPTABLE).
Any other exception fails the vector. A few vectors are refused by a documented policy of
ours (POLICY): they must be refused with our error, and are counted apart.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sscard.crypto import hashes, sm4
from sscard.crypto.algorithms import (
    EncryptionScheme,
    KeyAlgorithm,
    PssParameters,
    SignatureAlgorithm,
)
from sscard.crypto.asymmetric import PrivateKey, PublicKey, SignatureEncoding
from sscard.crypto.errors import CryptoError, DecryptionError
from tests.conftest import conformance_dir

VECTORS = conformance_dir() / "wycheproof" / "testvectors_v1"
FILES = sorted(VECTORS.glob("*.json")) if VECTORS.is_dir() else []

#: Why an "acceptable" vector may go either way, per flag (Wycheproof leaves these to policy).
ACCEPTABLE = {
    "InvalidAsn": "BER or odd DER in the peer's SubjectPublicKeyInfo: pyca/cryptography's"
                  " parser decides; the point is still checked to lie on the curve",
    "CompressedPublic": "compressed peer points are accepted (they are on the curve)",
    "CompressedPoint": "compressed peer points are accepted (they are on the curve)",
    "UnnamedCurve": "explicit curve parameters are refused (RFC 5480: named curves only)",
    "UnusedParam": "explicit curve parameters are refused (RFC 5480: named curves only)",
    "ModifiedGenerator": "explicit curve parameters are refused",
    "ModifiedCofactor": "explicit curve parameters are refused",
    "NoCofactor": "explicit curve parameters are refused",
    "ModifiedCurveParameter": "explicit curve parameters are refused",
    "WrongOrder": "explicit curve parameters are refused",
    "MissingNull": "PKCS#1 v1.5 DigestInfo without the NULL parameter: OpenSSL accepts it",
}

#: Vectors that Wycheproof calls valid and that we refuse on purpose: file -> (reason, which).
POLICY: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "sm4_gcm_test.json": (
        "SM4-GCM nonces outside 8-256 bytes are refused (sm4.GCM_NONCE_MIN/MAX)",
        lambda t: not sm4.GCM_NONCE_MIN <= len(t["iv"]) // 2 <= sm4.GCM_NONCE_MAX),
}

#: Invalid vectors answered by implicit rejection rather than an error (group type, flag): the
#: output is a pseudo-random message that depends only on the key and the ciphertext, so no
#: padding oracle (Bleichenbacher, Marvin) tells bad paddings apart. OpenSSL 3.2+ does this
#: for PKCS#1 v1.5 decryption; in CMS the wrong content key then fails the content's check.
IMPLICIT_REJECTION = {("RsaesPkcs1Decrypt", "InvalidPkcs1Padding")}

_SHA = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
_EC = {"secp256r1": KeyAlgorithm.EC_P256, "secp384r1": KeyAlgorithm.EC_P384}
_ECDSA = {"sha256": SignatureAlgorithm.ECDSA_SHA256, "sha384": SignatureAlgorithm.ECDSA_SHA384,
          "sha512": SignatureAlgorithm.ECDSA_SHA512}
_PKCS1 = {"sha256": SignatureAlgorithm.RSA_PKCS1_SHA256,
          "sha384": SignatureAlgorithm.RSA_PKCS1_SHA384,
          "sha512": SignatureAlgorithm.RSA_PKCS1_SHA512}

# A runner takes (group, test) and returns the operation's output, or raises CryptoError.
Runner = Callable[[dict[str, Any], dict[str, Any]], bytes | None]
_keys: dict[str, Any] = {}


def _public(der_hex: str) -> PublicKey:
    if der_hex not in _keys:
        _keys[der_hex] = PublicKey.from_spki(bytes.fromhex(der_hex))
    key: PublicKey = _keys[der_hex]
    return key


def _private(der_hex: str) -> PrivateKey:
    if der_hex not in _keys:
        _keys[der_hex] = PrivateKey.from_pkcs8(bytes.fromhex(der_hex))
    key: PrivateKey = _keys[der_hex]
    return key


def _ecdsa(encoding: SignatureEncoding) -> Runner:
    def run(g: dict[str, Any], t: dict[str, Any]) -> None:
        _public(g["publicKeyDer"]).verify(
            bytes.fromhex(t["sig"]), bytes.fromhex(t["msg"]), _ECDSA[_SHA[g["sha"]]],
            encoding=encoding)
    return run


def _eddsa(g: dict[str, Any], t: dict[str, Any]) -> None:
    _public(g["publicKeyDer"]).verify(bytes.fromhex(t["sig"]), bytes.fromhex(t["msg"]),
                                      SignatureAlgorithm.ED25519)


def _rsa_pkcs1_verify(g: dict[str, Any], t: dict[str, Any]) -> None:
    _public(g["publicKeyDer"]).verify(bytes.fromhex(t["sig"]), bytes.fromhex(t["msg"]),
                                      _PKCS1[_SHA[g["sha"]]])


def _rsa_pss_caller(g: dict[str, Any], t: dict[str, Any]) -> None:
    """A plain RSA key; the caller states the PSS parameters."""
    params = PssParameters(_SHA[g["sha"]], _SHA[g["mgfSha"]], g["sLen"])
    _public(g["publicKeyDer"]).verify(bytes.fromhex(t["sig"]), bytes.fromhex(t["msg"]),
                                      params.algorithm, pss=params)


def _rsa_pss_key(g: dict[str, Any], t: dict[str, Any]) -> None:
    """An id-RSASSA-PSS key: its own parameters decide; the caller says nothing."""
    key = _public(g["publicKeyDer"])
    assert key.pss == PssParameters(_SHA[g["sha"]], _SHA[g["mgfSha"]], g["sLen"])
    key.verify(bytes.fromhex(t["sig"]), bytes.fromhex(t["msg"]))


def _oaep(g: dict[str, Any], t: dict[str, Any]) -> bytes:
    scheme = {("sha256", "sha256"): EncryptionScheme.RSA_OAEP_SHA256,
              ("sha1", "sha1"): EncryptionScheme.RSA_OAEP_SHA1}[_SHA[g["sha"]], _SHA[g["mgfSha"]]]
    return _private(g["privateKeyPkcs8"]).decrypt(bytes.fromhex(t["ct"]), scheme,
                                                  label=bytes.fromhex(t["label"]))


def _pkcs1_decrypt(g: dict[str, Any], t: dict[str, Any]) -> bytes:
    return _private(g["privateKeyPkcs8"]).decrypt(bytes.fromhex(t["ct"]),
                                                  EncryptionScheme.RSA_PKCS1V15)


def _ecdh(g: dict[str, Any], t: dict[str, Any]) -> bytes:
    ours = PrivateKey.from_private_value(_EC[g["curve"]], int(t["private"], 16))
    return ours.exchange(PublicKey.from_spki(bytes.fromhex(t["public"])))


def _hmac_sm3(g: dict[str, Any], t: dict[str, Any]) -> None:
    tag = bytes.fromhex(t["tag"])
    full = hashes.hmac_sm3(bytes.fromhex(t["key"]), bytes.fromhex(t["msg"]))
    # truncated tags (tagSize < 256) are the leftmost bytes (RFC 2104 §5)
    if len(tag) != g["tagSize"] // 8 or full[:len(tag)] != tag:
        raise CryptoError("HMAC-SM3 tag mismatch")


def _aead(encrypt: Callable[..., bytes], decrypt: Callable[..., bytes],
          tag_arg: bool) -> Runner:
    def run(g: dict[str, Any], t: dict[str, Any]) -> bytes:
        key, iv = bytes.fromhex(t["key"]), bytes.fromhex(t["iv"])
        aad, msg = bytes.fromhex(t["aad"]), bytes.fromhex(t["msg"])
        sealed = bytes.fromhex(t["ct"] + t["tag"])
        extra = {"tag_size": g["tagSize"] // 8} if tag_arg else {}
        if t["result"] == "valid" and encrypt(key, iv, msg, aad, **extra) != sealed:
            raise AssertionError(f"tcId {t['tcId']}: encryption differs from the vector")
        if not tag_arg and g["tagSize"] != 128:
            raise DecryptionError("SM4-GCM tags are 16 bytes")
        out = decrypt(key, iv, sealed, aad, **extra)
        if out != msg:
            raise AssertionError(f"tcId {t['tcId']}: decryption differs from the vector")
        return out
    return run


RUNNERS: dict[str, Runner] = {
    "EcdsaVerify": _ecdsa(SignatureEncoding.DER),
    "EcdsaP1363Verify": _ecdsa(SignatureEncoding.P1363),
    "EddsaVerify": _eddsa,
    "RsassaPkcs1Verify": _rsa_pkcs1_verify,
    "RsassaPssVerify": _rsa_pss_caller,
    "RsassaPssWithParametersVerify": _rsa_pss_key,
    "RsaesOaepDecrypt": _oaep,
    "RsaesPkcs1Decrypt": _pkcs1_decrypt,
    "EcdhTest": _ecdh,
    "MacTest": _hmac_sm3,
}
_AEAD = {
    "SM4-GCM": _aead(sm4.gcm_encrypt, sm4.gcm_decrypt, tag_arg=False),
    "SM4-CCM": _aead(sm4.ccm_encrypt, sm4.ccm_decrypt, tag_arg=True),
}
_EXPECTED_OUTPUT = {"RsaesOaepDecrypt": "msg", "RsaesPkcs1Decrypt": "msg", "EcdhTest": "shared"}


def _runner(doc: dict[str, Any], group: dict[str, Any]) -> Runner:
    if group["type"] == "AeadTest":
        return _AEAD[doc["algorithm"]]
    if group["type"] == "MacTest" and doc["algorithm"] != "HMACSM3":
        raise KeyError(doc["algorithm"])
    return RUNNERS[group["type"]]


def check_file(path: Path) -> tuple[Counter[str], list[str]]:
    """Run one file; return the counts and the failures (empty when all is well)."""
    doc = json.loads(path.read_text())
    counts: Counter[str] = Counter()
    failures: list[str] = []
    for group in doc["testGroups"]:
        run = _runner(doc, group)
        out_field = _EXPECTED_OUTPUT.get(group["type"])
        for t in group["tests"]:
            result = t["result"]
            counts[result] += 1
            where = f"{path.name} tcId {t['tcId']} ({result}, {t['comment']!r}, {t['flags']})"
            reason, applies = POLICY.get(path.name, ("", lambda _t: False))
            policy = applies(t)
            try:
                out = run(group, t)
            except CryptoError as exc:
                if result == "valid" and policy:
                    counts["policy-refused"] += 1
                elif result == "valid":
                    failures.append(f"{where}: refused: {exc}")
                elif result == "acceptable":
                    counts["acceptable-refused"] += 1
                    counts.update(f"acceptable-refused:{f}" for f in t["flags"])
                continue
            except Exception as exc:  # any foreign exception is the finding
                failures.append(f"{where}: {type(exc).__name__}: {exc}")
                continue
            implicit = any((group["type"], f) in IMPLICIT_REJECTION for f in t["flags"])
            if policy:
                failures.append(f"{where}: accepted despite policy: {reason}")
            elif result == "invalid" and implicit:
                if out == bytes.fromhex(t["msg"]) or run(group, t) != out:
                    failures.append(f"{where}: implicit rejection not pseudo-random and fixed")
                counts["implicit-rejection"] += 1
            elif result == "invalid":
                failures.append(f"{where}: accepted")
            elif out_field and out != bytes.fromhex(t[out_field]):
                failures.append(f"{where}: wrong output {out.hex() if out else out}")
            elif result == "acceptable":
                counts["acceptable-accepted"] += 1
                counts.update(f"acceptable-accepted:{f}" for f in t["flags"])
    return counts, failures


def _undocumented_acceptable(path: Path) -> list[str]:
    doc = json.loads(path.read_text())
    return [f"{path.name} tcId {t['tcId']}: acceptable with no documented flag {t['flags']}"
            for g in doc["testGroups"] for t in g["tests"]
            if t["result"] == "acceptable" and not set(t["flags"]) & ACCEPTABLE.keys()]
def test_every_file_is_covered() -> None:
    if not FILES:
        pytest.skip(f"Wycheproof vectors not found at {VECTORS} (set SSCARD_CONFORMANCE)")
    for path in FILES:
        doc = json.loads(path.read_text())
        for group in doc["testGroups"]:
            _runner(doc, group)  # KeyError: a file whose kind this test cannot run


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_wycheproof_file(path: Path, record_property: Callable[[str, object], None]) -> None:
    counts, failures = check_file(path)
    failures += _undocumented_acceptable(path)
    total = counts["valid"] + counts["invalid"] + counts["acceptable"]
    line = (f"{path.name}: {total} vectors, {total - len(failures)} pass;"
            f" valid={counts['valid']} invalid={counts['invalid']}"
            f" acceptable={counts['acceptable']} (accepted {counts['acceptable-accepted']},"
            f" refused {counts['acceptable-refused']}) policy-refused={counts['policy-refused']}"
            f" implicit-rejection={counts['implicit-rejection']}")
    print(line)
    record_property("wycheproof", line)
    assert not failures, "\n".join([line, *failures[:40]])
