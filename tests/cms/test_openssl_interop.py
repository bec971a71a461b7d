"""Interoperability with the OpenSSL 3 command line for RSA and ECDSA (an independent CMS
implementation): SignedData and EnvelopedData, both directions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms

from sscard.cms import (
    ContentCipher,
    EnvelopeDecryptionError,
    TrustConfig,
    Verifier,
    decrypt,
    encrypt,
    sign,
)
from sscard.x509.pem import der_to_pem
from tests.cms.pki import Pki

DOC = "社会保险缴费记录 2026-11 / contribution record\n".encode() * 20


def _pki(request: pytest.FixtureRequest, name: str) -> Pki:
    return request.getfixturevalue(f"{name}_pki")  # type: ignore[no-any-return]


def _write_common(tmp: Path, pki: Pki) -> None:
    (tmp / "root.pem").write_bytes(der_to_pem(pki.root.cert.dump(), "CERTIFICATE"))
    (tmp / "ca.pem").write_bytes(der_to_pem(pki.ca.cert.dump(), "CERTIFICATE"))
    (tmp / "signer.pem").write_bytes(der_to_pem(pki.signer.cert.dump(), "CERTIFICATE"))
    (tmp / "signer.key").write_bytes(pki.signer.key.private_key.encrypted_pkcs8(b"pw"))
    (tmp / "doc.txt").write_bytes(DOC)


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(args), capture_output=True, check=False)


@pytest.mark.parametrize("family", ["rsa", "ec"])
@pytest.mark.parametrize("detached", [False, True])
def test_openssl_verifies_our_signed_data(request: pytest.FixtureRequest, openssl: str,
                                          tmp_path: Path, family: str, detached: bool) -> None:
    pki = _pki(request, family)
    _write_common(tmp_path, pki)
    der = sign(DOC, pki.signer.key, pki.signer.cert, chain=pki.chain, detached=detached)
    (tmp_path / "sig.der").write_bytes(der)
    args = [openssl, "cms", "-verify", "-binary", "-inform", "DER",
            "-in", str(tmp_path / "sig.der"),
            "-CAfile", str(tmp_path / "root.pem"), "-purpose", "any",
            "-out", str(tmp_path / "out.txt")]
    if detached:
        args += ["-content", str(tmp_path / "doc.txt")]
    res = _run(*args)
    assert res.returncode == 0, res.stderr.decode()
    assert b"Verification successful" in res.stderr
    assert (tmp_path / "out.txt").read_bytes() == DOC

    # and openssl refuses it when the document changed
    if detached:
        (tmp_path / "doc.txt").write_bytes(DOC + b"!")
        res = _run(*args)
        assert res.returncode != 0
        assert b"digest failure" in res.stderr.lower() or b"failure" in res.stderr.lower()


@pytest.mark.parametrize("family", ["rsa", "ec"])
@pytest.mark.parametrize("detached", [False, True])
def test_we_verify_openssl_signed_data(request: pytest.FixtureRequest, openssl: str,
                                       tmp_path: Path, family: str, detached: bool) -> None:
    pki = _pki(request, family)
    _write_common(tmp_path, pki)
    args = [openssl, "cms", "-sign", "-binary", "-md", "sha256", "-outform", "DER",
            "-in", str(tmp_path / "doc.txt"), "-signer", str(tmp_path / "signer.pem"),
            "-inkey", str(tmp_path / "signer.key"), "-passin", "pass:pw",
            "-certfile", str(tmp_path / "ca.pem"), "-out", str(tmp_path / "sig.der")]
    if not detached:
        args.append("-nodetach")
    res = _run(*args)
    assert res.returncode == 0, res.stderr.decode()
    der = (tmp_path / "sig.der").read_bytes()
    verifier = Verifier(TrustConfig([pki.root.cert]))
    report = verifier.verify(der, DOC if detached else None)
    assert report.valid, report.problems
    assert report.signer is not None
    assert report.signer.social_insurance_number == "350102199001011234"
    assert report.content == DOC
    changed = verifier.verify(der, DOC.replace(b"2026", b"2027"))
    assert not changed.valid
    assert {p.code.value for p in changed.problems} == {"CONTENT_CHANGED"}


@pytest.mark.parametrize("family", ["rsa", "ec"])
@pytest.mark.parametrize("cipher", [ContentCipher.AES256_CBC, ContentCipher.AES128_CBC])
def test_openssl_decrypts_our_enveloped_data(request: pytest.FixtureRequest, openssl: str,
                                             tmp_path: Path, family: str,
                                             cipher: ContentCipher) -> None:
    pki = _pki(request, family)
    _write_common(tmp_path, pki)
    (tmp_path / "env.der").write_bytes(encrypt(DOC, [pki.signer.cert], cipher=cipher))
    res = _run(openssl, "cms", "-decrypt", "-binary", "-inform", "DER",
               "-in", str(tmp_path / "env.der"), "-recip", str(tmp_path / "signer.pem"),
               "-inkey", str(tmp_path / "signer.key"), "-passin", "pass:pw",
               "-out", str(tmp_path / "out.txt"))
    assert res.returncode == 0, res.stderr.decode()
    assert (tmp_path / "out.txt").read_bytes() == DOC


@pytest.mark.parametrize("family,keyopts", [
    ("rsa", []),  # OpenSSL's default: PKCS#1 v1.5 key transport
    ("rsa", ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256",
             "-keyopt", "rsa_mgf1_md:sha256"]),
    ("ec", []),  # ECDH ephemeral-static, OpenSSL's default KDF (SHA-1)
    ("ec", ["-keyopt", "ecdh_kdf_md:sha256"]),
])
def test_we_decrypt_openssl_enveloped_data(request: pytest.FixtureRequest, openssl: str,
                                           tmp_path: Path, family: str,
                                           keyopts: list[str]) -> None:
    pki = _pki(request, family)
    _write_common(tmp_path, pki)
    res = _run(openssl, "cms", "-encrypt", "-binary", "-aes-256-cbc", "-outform", "DER",
               "-in", str(tmp_path / "doc.txt"), "-recip", str(tmp_path / "signer.pem"),
               *keyopts, "-out", str(tmp_path / "env.der"))
    assert res.returncode == 0, res.stderr.decode()
    opened = decrypt((tmp_path / "env.der").read_bytes(), pki.signer.key, pki.signer.cert)
    assert opened.content == DOC
    assert opened.cipher == "aes256_cbc"


@pytest.mark.parametrize("family", ["rsa", "ec"])
def test_aes_gcm_auth_enveloped_data_both_ways(request: pytest.FixtureRequest, openssl: str,
                                               tmp_path: Path, family: str) -> None:
    """AES-GCM as OpenSSL does it: RFC 5083 AuthEnvelopedData."""
    pki = _pki(request, family)
    _write_common(tmp_path, pki)
    ours = encrypt(DOC, [pki.signer.cert], cipher=ContentCipher.AES256_GCM, authenticated=True)
    (tmp_path / "ours.der").write_bytes(ours)
    res = _run(openssl, "cms", "-decrypt", "-binary", "-inform", "DER",
               "-in", str(tmp_path / "ours.der"), "-recip", str(tmp_path / "signer.pem"),
               "-inkey", str(tmp_path / "signer.key"), "-passin", "pass:pw",
               "-out", str(tmp_path / "out.txt"))
    assert res.returncode == 0, res.stderr.decode()
    assert (tmp_path / "out.txt").read_bytes() == DOC

    res = _run(openssl, "cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER",
               "-in", str(tmp_path / "doc.txt"), "-recip", str(tmp_path / "signer.pem"),
               "-out", str(tmp_path / "theirs.der"))
    assert res.returncode == 0, res.stderr.decode()
    theirs = (tmp_path / "theirs.der").read_bytes()
    opened = decrypt(theirs, pki.signer.key, pki.signer.cert)
    assert opened.content == DOC and opened.cipher == "aes256_gcm"
    tampered = bytearray(theirs)
    tampered[-3] ^= 0x01  # inside the mac
    with pytest.raises(EnvelopeDecryptionError, match="authentication tag"):
        decrypt(bytes(tampered), pki.signer.key, pki.signer.cert)


@pytest.mark.parametrize("saltlen", ["max", "digest", "0"])
def test_we_verify_openssl_rsa_pss_with_its_stated_salt_length(
        rsa_pki: Pki, openssl: str, tmp_path: Path, saltlen: str) -> None:
    """OpenSSL states the PSS salt length in the SignerInfo; we check exactly that length,
    so the same signature with another stated length fails (no PSS 'auto')."""
    _write_common(tmp_path, rsa_pki)
    res = _run(openssl, "cms", "-sign", "-binary", "-md", "sha256", "-outform", "DER",
               "-in", str(tmp_path / "doc.txt"), "-signer", str(tmp_path / "signer.pem"),
               "-inkey", str(tmp_path / "signer.key"), "-passin", "pass:pw", "-nodetach",
               "-keyopt", "rsa_padding_mode:pss", "-keyopt", f"rsa_pss_saltlen:{saltlen}",
               "-out", str(tmp_path / "sig.der"))
    assert res.returncode == 0, res.stderr.decode()
    info = cms.ContentInfo.load((tmp_path / "sig.der").read_bytes())
    verifier = Verifier(TrustConfig([rsa_pki.root.cert], intermediates=rsa_pki.chain))
    assert verifier.verify(info.dump()).valid
    signer_info = info["content"]["signer_infos"][0]
    params = signer_info["signature_algorithm"]["parameters"]
    stated = params["salt_length"].native
    assert stated == {"max": 256 - 32 - 2, "digest": 32, "0": 0}[saltlen]
    params["salt_length"] = stated + 1
    report = verifier.verify(info.dump(force=True))
    assert {p.code.value for p in report.problems} == {"BAD_SIGNATURE"}
