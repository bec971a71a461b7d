"""The foundation's CLI forms, run as a user would: the installed `sscard` command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.crypto.openssl_cli import DISTID, openssl

ALGS = ["sm2", "ec-p256", "ec-p384", "rsa2048", "rsa3072", "ed25519"]


def sscard(*args: str | Path, input: bytes | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("sscard") or str(Path(__file__).parents[2] / ".venv" / "bin" / "sscard")
    proc = subprocess.run([exe, *map(str, args)], input=input.decode() if input else None,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"sscard {args} failed: {proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture()
def pf(tmp_path: Path) -> Path:
    p = tmp_path / "pf"
    p.write_text("s3cret passphrase\n")
    p.chmod(0o600)  # a secret file: owner only
    return p


@pytest.mark.parametrize("alg", ALGS)
def test_key_generate_is_read_by_openssl(alg: str, tmp_path: Path, pf: Path) -> None:
    out = tmp_path / "KEY.pem"
    sscard("key", "generate", "--algorithm", alg, "--out", out, "--passphrase-file", pf)
    text = openssl("pkey", "-in", out, "-passin", f"file:{pf}", "-noout", "-text").stdout
    assert b"Private-Key" in text or b"private-key" in text.lower()
    again = sscard("key", "generate", "--algorithm", alg, "--out", out,
                   "--passphrase-file", pf, check=False)
    assert again.returncode != 0 and "exists" in again.stderr


def test_passphrase_from_stdin_and_never_argv(tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    sscard("key", "generate", "--out", out, "--passphrase-stdin", input=b"from stdin\n")
    pf = tmp_path / "p"
    pf.write_text("from stdin\n")
    pf.chmod(0o600)  # a secret file: owner only
    openssl("pkey", "-in", out, "-passin", f"file:{pf}", "-noout")
    bad = sscard("key", "generate", "--out", tmp_path / "x.pem", "--passphrase", "oops",
                 check=False)
    assert bad.returncode == 2 and "No such option" in bad.stderr


def test_no_passphrase_source_without_a_terminal_is_refused(tmp_path: Path) -> None:
    proc = sscard("key", "generate", "--out", tmp_path / "k.pem", check=False)
    assert proc.returncode != 0 and "passphrase needed" in proc.stderr


def test_csr_create_passes_openssl_req_verify(tmp_path: Path, pf: Path) -> None:
    key = tmp_path / "KEY.pem"
    req = tmp_path / "REQ.pem"
    sscard("key", "generate", "--algorithm", "sm2", "--out", key, "--passphrase-file", pf)
    sscard("csr", "create", "--key", key, "--passphrase-file", pf,
           "--subject", "CN=张三,serialNumber=350102199001011234", "--out", req)
    out = openssl("req", "-in", req, "-verify", "-noout", "-vfyopt", DISTID)
    assert b"verify OK" in out.stdout + out.stderr
    subject = openssl("req", "-in", req, "-noout", "-subject", "-nameopt", "utf8").stdout
    assert "张三".encode() in subject
    shown = sscard("x509", "show", req).stdout
    assert "CN=张三, serialNumber=350102199001011234" in shown


def test_csr_with_wrong_passphrase_or_bad_subject(tmp_path: Path, pf: Path) -> None:
    key = tmp_path / "KEY.pem"
    sscard("key", "generate", "--out", key, "--passphrase-file", pf)
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    wrong.chmod(0o600)  # a secret file: owner only
    proc = sscard("csr", "create", "--key", key, "--passphrase-file", wrong,
                  "--subject", "CN=x", "--out", tmp_path / "r.pem", check=False)
    assert proc.returncode == 1 and "wrong passphrase" in proc.stderr
    proc = sscard("csr", "create", "--key", key, "--passphrase-file", pf,
                  "--subject", "CN", "--out", tmp_path / "r.pem", check=False)
    assert proc.returncode == 2 and "has no '='" in proc.stderr


def test_x509_show_openssl_certificate_and_crl(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    cert = tmp_path / "c.der"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    openssl("req", "-new", "-x509", "-key", key, "-subj", "/C=CN/O=人社厅/CN=李四", "-utf8",
            "-days", "2", "-outform", "DER", "-out", cert)
    shown = sscard("x509", "show", cert).stdout
    assert "Subject:    C=CN, O=人社厅, CN=李四" in shown
    garbage = tmp_path / "g.pem"
    garbage.write_bytes(b"\x30\x82\x01")
    proc = sscard("x509", "show", garbage, check=False)
    assert proc.returncode == 1 and "not a certificate, CSR or CRL" in proc.stderr
