"""``sscard key list`` (the ``list_keys`` command): software key files and a real SoftHSM2 token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sscard.keys.list_cli import list_keys
from sscard.keys.pkcs11 import Pkcs11Key, Pkcs11Token
from sscard.keys.software import SoftwareKey
from tests.keys.conftest import run_openssl
from tests.softhsm import SoftHsmToken, softhsm_env

PASSPHRASE = b"correct horse battery"


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory, openssl_bin: str) -> Path:
    d = tmp_path_factory.mktemp("keys")
    SoftwareKey.generate("sm2").store(d / "card-sign.pem", PASSPHRASE)
    SoftwareKey.generate("ec-p256").store(d / "ocsp.der", PASSPHRASE, pem=False)
    # a plain PKCS#8 key written by OpenSSL: listed, with its algorithm and a warning
    run_openssl(openssl_bin, "genpkey", "-algorithm", "EC", "-pkeyopt",
                "ec_paramgen_curve:P-384", "-out", d / "plain.pem")
    (d / "notes.txt").write_text("not a key\n")
    (d / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    (d / "broken.pem").write_text(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAMCAQA=\n-----END ENCRYPTED PRIVATE KEY-----\n")
    (d / "subdir").mkdir()
    return d


def _run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(list_keys, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_lists_software_keys_without_opening_them(key_dir: Path) -> None:
    code, out = _run("--dir", key_dir, "--json")
    assert code == 0, out
    rows = {k["file"]: k for k in json.loads(out)["software"]["keys"]}
    assert set(rows) == {"card-sign.pem", "ocsp.der", "plain.pem", "broken.pem"}
    assert rows["card-sign.pem"]["algorithm"] == "encrypted"
    assert rows["ocsp.der"]["algorithm"] == "encrypted"
    assert (rows["plain.pem"]["algorithm"], rows["plain.pem"]["encrypted"]) == ("ec-p384", False)
    assert "NOT ENCRYPTED" in rows["plain.pem"]["note"]
    assert "unreadable" in rows["broken.pem"]["note"]


def test_passphrase_file_reveals_algorithms(key_dir: Path, tmp_path: Path) -> None:
    pf = tmp_path / "pass"
    pf.write_bytes(PASSPHRASE + b"\n")
    pf.chmod(0o600)  # a secret file: owner only
    code, out = _run("--dir", key_dir, "--passphrase-file", pf)
    assert code == 0, out
    lines = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    assert "sm2" in lines["card-sign.pem"]
    assert "ec-p256" in lines["ocsp.der"]
    pf.write_text("wrong\n")
    pf.chmod(0o600)  # a secret file: owner only
    code, out = _run("--dir", key_dir, "--passphrase-file", pf)
    assert code == 0, out
    assert "passphrase does not open it" in out


def test_lists_token_keys_with_label_id_type_and_size(
    token: Pkcs11Token, rsa_key: Pkcs11Key, ec256_key: Pkcs11Key, softhsm_token: SoftHsmToken
) -> None:
    storage = token.generate_aes_key("cli-storage-key")
    code, out = _run("--pkcs11-module", softhsm_token.module, "--token", softhsm_token.label,
                     "--pin-file", softhsm_token.pin_file)
    assert code == 0, out
    assert softhsm_token.user_pin not in out
    lines = out.splitlines()
    assert lines[0].startswith(f"keys on token '{softhsm_token.label}'")
    assert lines[1].split() == ["CLASS", "LABEL", "ID", "TYPE", "SIZE"]
    rows = [line.split() for line in lines[2:]]
    assert ["private", rsa_key.key_label, rsa_key.key_id.hex(), "rsa", "2048"] in rows
    assert ["private", ec256_key.key_label, ec256_key.key_id.hex(), "ec", "(secp256r1)",
            "256"] in rows
    assert ["secret", "cli-storage-key", storage.key_id.hex(), "aes", "256"] in rows


def test_directory_and_token_together_as_json(
    key_dir: Path, rsa_key: Pkcs11Key, softhsm_token: SoftHsmToken
) -> None:
    code, out = _run("--dir", key_dir, "--pkcs11-module", softhsm_token.module,
                     "--token", softhsm_token.label, "--pin-file", softhsm_token.pin_file,
                     "--json")
    assert code == 0, out
    data = json.loads(out)
    assert len(data["software"]["keys"]) == 4
    ids = {k["id"] for k in data["token"]["keys"] if k["class"] == "private"}
    assert rsa_key.key_id.hex() in ids
    assert all(k["extractable"] is False for k in data["token"]["keys"]
               if k["class"] == "private")


def test_in_a_separate_process_without_login_only_public_objects_show(
    rsa_key: Pkcs11Key, softhsm_token: SoftHsmToken
) -> None:
    # a process of its own: in this one the token is already logged in by the fixtures, and
    # PKCS#11 logins are per process, so a no-login session here would see private keys too
    def run(*extra: str) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-c",
             "from sscard.keys.list_cli import list_keys; list_keys(prog_name='key list')",
             "--pkcs11-module", softhsm_token.module, "--token", softhsm_token.label,
             "--json", *extra],
            env=softhsm_env(), capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    public_only = run("--no-login")
    assert {k["class"] for k in public_only["token"]["keys"]} == {"public"}
    logged_in = run("--pin-file", str(softhsm_token.pin_file))
    assert {k["class"] for k in logged_in["token"]["keys"]} >= {"public", "private"}
    assert rsa_key.key_id.hex() in {k["id"] for k in logged_in["token"]["keys"]}


def test_wrong_pin_and_unknown_token_fail_clearly(softhsm_token: SoftHsmToken,
                                                  tmp_path: Path) -> None:
    bad = tmp_path / "pin"
    bad.write_text("definitely-wrong\n")
    bad.chmod(0o600)  # a secret file: owner only
    code, out = _run("--pkcs11-module", softhsm_token.module, "--token", softhsm_token.label,
                     "--pin-file", bad)
    assert code == 1
    assert f"wrong PIN for token '{softhsm_token.label}'" in out
    assert "definitely-wrong" not in out
    code, out = _run("--pkcs11-module", softhsm_token.module, "--token", "absent-token",
                     "--pin-file", softhsm_token.pin_file)
    assert code == 1
    assert "no token labelled 'absent-token'" in out


def test_missing_directory_fails_clearly(tmp_path: Path) -> None:
    code, out = _run("--dir", tmp_path / "nowhere")
    assert code == 1
    assert "is not a directory" in out
