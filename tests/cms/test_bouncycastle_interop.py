"""SM2 CMS against an independent implementation: BouncyCastle (Debian's libbcprov-java and
libbcpkix-java), driven by tests/cms/java/BcCmsCheck.java, compiled here with javac.

OpenSSL 3.0's CMS cannot do SM2, hence BouncyCastle."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms
from click.testing import CliRunner

from sscard.cli import cli
from sscard.cms import (
    ContentCipher,
    EnvelopeDecryptionError,
    Flavour,
    Sm2KeyTransport,
    TrustConfig,
    Verifier,
    decrypt,
    encrypt,
    sign,
)
from sscard.crypto import oids
from tests.cms.pki import Pki

HERE = Path(__file__).parent
JARS = [Path("/usr/share/java") / j for j in ("bcprov.jar", "bcpkix.jar", "bcutil.jar")]
DOC = "医疗保险结算单 No.2026-001\n".encode() * 30


@pytest.fixture(scope="module")
def bc(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command prefix that runs the compiled check."""
    javac, java = shutil.which("javac"), shutil.which("java")
    missing = [str(j) for j in JARS if not j.exists()]
    if javac is None or java is None or missing:
        why = f"javac/java or BouncyCastle jars missing ({missing or 'javac/java'})"
        if os.environ.get("CI") == "true":
            pytest.fail(why + ": install default-jdk-headless libbcpkix-java")
        pytest.skip(why)
    out = tmp_path_factory.mktemp("bc")
    classpath = ":".join(str(j) for j in JARS)
    source = HERE / "java" / "BcCmsCheck.java"
    subprocess.run([javac, "-d", str(out), "-cp", classpath, str(source)],
                   check=True, capture_output=True)
    return [java, "-cp", f"{out}:{classpath}", "BcCmsCheck"]


def _files(tmp: Path, pki: Pki) -> None:
    (tmp / "key.pk8").write_bytes(pki.signer.key.private_key.pkcs8_der())
    (tmp / "cert.der").write_bytes(pki.signer.cert.dump())
    (tmp / "doc.txt").write_bytes(DOC)


@pytest.mark.parametrize("detached", [False, True])
def test_bouncycastle_verifies_our_sm2_signed_data(bc: list[str], sm2_pki: Pki, tmp_path: Path,
                                                   detached: bool) -> None:
    _files(tmp_path, sm2_pki)
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain,
               detached=detached)
    (tmp_path / "sig.der").write_bytes(der)
    args = [*bc, "verify", str(tmp_path / "sig.der")]
    if detached:
        args.append(str(tmp_path / "doc.txt"))
    res = subprocess.run(args, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("VERIFIED")
    assert "1.2.156.10197.1.501" in res.stdout  # SM2-with-SM3

    # BouncyCastle must refuse it once the document changed (the check can fail)
    (tmp_path / "doc.txt").write_bytes(DOC + b"tampered")
    if detached:
        res = subprocess.run(args, capture_output=True, text=True, check=False)
        assert res.returncode != 0


@pytest.mark.parametrize("detached", [False, True])
def test_we_verify_bouncycastle_sm2_signed_data(bc: list[str], sm2_pki: Pki, tmp_path: Path,
                                                detached: bool) -> None:
    _files(tmp_path, sm2_pki)
    args = [*bc, "sign", str(tmp_path / "key.pk8"), str(tmp_path / "cert.der"),
            str(tmp_path / "doc.txt"), str(tmp_path / "sig.der")]
    if detached:
        args.append("detached")
    res = subprocess.run(args, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    der = (tmp_path / "sig.der").read_bytes()
    verifier = Verifier(TrustConfig([sm2_pki.root.cert], intermediates=sm2_pki.chain))
    report = verifier.verify(der, DOC if detached else None)
    assert report.valid, report.problems
    assert report.signer is not None and report.signer.common_name == "张三"
    assert {p.code.value for p in verifier.verify(der, DOC + b"x").problems} == {
        "CONTENT_CHANGED"}


@pytest.mark.parametrize("flavour", [Flavour.RFC5652, Flavour.GM])
def test_bouncycastle_opens_our_sm2_envelope(bc: list[str], sm2_pki: Pki, tmp_path: Path,
                                             flavour: Flavour) -> None:
    _files(tmp_path, sm2_pki)
    env = encrypt(DOC, [sm2_pki.signer.cert], cipher=ContentCipher.SM4_CBC, flavour=flavour)
    (tmp_path / "env.der").write_bytes(env)
    res = subprocess.run([*bc, "decrypt", str(tmp_path / "key.pk8"), str(tmp_path / "env.der"),
                          str(tmp_path / "out.txt")], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.txt").read_bytes() == DOC


def _bc_cms_decrypt(bc: list[str], tmp: Path, env: bytes) -> subprocess.CompletedProcess[str]:
    (tmp / "env.der").write_bytes(env)
    return subprocess.run([*bc, "cms-decrypt", str(tmp / "key.pk8"), str(tmp / "env.der"),
                           str(tmp / "out.txt")], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("flavour", [Flavour.RFC5652, Flavour.GM])
def test_bouncycastle_cms_api_opens_our_sm2_envelope_on_request(
        bc: list[str], sm2_pki: Pki, tmp_path: Path, flavour: Flavour) -> None:
    """BC's CMSEnvelopedData looks SM2 key transport up under 1.2.156.10197.1.301.3.2.1 only:
    our GM/T 0010 default (1.2.156.10197.1.301.3) it cannot open, the BouncyCastle form it can."""
    _files(tmp_path, sm2_pki)
    ours = encrypt(DOC, [sm2_pki.signer.cert], cipher=ContentCipher.AES128_CBC,
                   flavour=flavour)
    res = _bc_cms_decrypt(bc, tmp_path, ours)
    assert res.returncode != 0 and oids.SM2_ENCRYPT in res.stderr  # the default: GM/T 0010
    bc_form = encrypt(DOC, [sm2_pki.signer.cert], cipher=ContentCipher.AES128_CBC,
                      flavour=flavour, sm2_form=Sm2KeyTransport.BOUNCYCASTLE)
    res = _bc_cms_decrypt(bc, tmp_path, bc_form)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"KEY-TRANSPORT {oids.SM2_ENCRYPT_WITH_SM3}"
    assert (tmp_path / "out.txt").read_bytes() == DOC
    # and we read both forms ourselves
    for env in (ours, bc_form):
        assert decrypt(env, sm2_pki.signer.key, sm2_pki.signer.cert).content == DOC


def test_we_open_an_envelope_from_bouncycastles_cms_api(bc: list[str], sm2_pki: Pki,
                                                        tmp_path: Path) -> None:
    _files(tmp_path, sm2_pki)
    res = subprocess.run([*bc, "cms-encrypt", str(tmp_path / "cert.der"),
                          str(tmp_path / "doc.txt"), str(tmp_path / "env.der")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    env = (tmp_path / "env.der").read_bytes()
    opened = decrypt(env, sm2_pki.signer.key, sm2_pki.signer.cert)
    assert opened.content == DOC and opened.cipher == "aes128_cbc"
    info = cms.ContentInfo.load(env)
    ktri = info["content"]["recipient_infos"][0].chosen
    assert ktri["key_encryption_algorithm"]["algorithm"].dotted == oids.SM2_ENCRYPT_WITH_SM3
    key = ktri["encrypted_key"].native
    assert key[0] == 4 and len(key) == 65 + 16 + 32  # raw C1 || C2 || C3
    # a changed C3 is refused with our error, not a crash
    ktri["encrypted_key"] = key[:-1] + bytes([key[-1] ^ 1])
    with pytest.raises(EnvelopeDecryptionError, match="C3 does not match"):
        decrypt(info.dump(force=True), sm2_pki.signer.key, sm2_pki.signer.cert)


def test_cli_sm2_key_transport_flag(bc: list[str], sm2_pki: Pki, tmp_path: Path) -> None:
    """``sscard encrypt --sm2-key-transport bouncycastle``: an envelope BC's CMS API opens."""
    _files(tmp_path, sm2_pki)
    res = CliRunner().invoke(cli, [
        "encrypt", "--to", str(tmp_path / "cert.der"), "--cipher", "aes128_cbc",
        "--sm2-key-transport", "bouncycastle", str(tmp_path / "doc.txt"),
        str(tmp_path / "env.der")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res2 = _bc_cms_decrypt(bc, tmp_path, (tmp_path / "env.der").read_bytes())
    assert res2.returncode == 0, res2.stderr
    assert (tmp_path / "out.txt").read_bytes() == DOC
    bad = CliRunner().invoke(cli, [
        "encrypt", "--to", str(tmp_path / "cert.der"), "--sm2-key-transport", "asn1",
        str(tmp_path / "doc.txt"), str(tmp_path / "env2.der")])
    assert bad.exit_code == 2 and "gmt0010" in bad.output
