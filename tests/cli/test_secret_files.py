"""Issue 12 finding 14 (two of the smaller ones): secret files (PIN, passphrase, token files)
that group or others may read are refused, by every reader of them, with the file and its mode
named; `sscard decrypt` writes the plaintext readable by its owner only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sscard.cli import cli
from sscard.secrets_input import read_secret, read_secret_file, write_private_file


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common default umask 022, whatever the test runner's is."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def secret(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_loose_secret_file_refused(tmp_path: Path, mode: int) -> None:
    path = secret(tmp_path / "pin", "246810\n", mode)
    with pytest.raises(click.UsageError) as refused:
        read_secret(file=path, prompt="PIN")
    message = str(refused.value.message)
    assert str(path) in message and f"{mode:04o}" in message and "chmod 600" in message
    with pytest.raises(click.UsageError, match=f"{mode:04o}"):
        read_secret_file(path, "token file")


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_secret_file_read(tmp_path: Path, mode: int) -> None:
    path = secret(tmp_path / "pin", "246810\nsecond line\n", mode)
    assert read_secret(file=path) == b"246810"
    assert read_secret_file(path, "token file") == b"246810\nsecond line\n"


def test_secret_from_a_pipe_is_not_a_file_mode_question(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"from a pipe\n")
    os.close(write_end)
    try:
        assert read_secret(file=Path(f"/dev/fd/{read_end}")) == b"from a pipe"
    finally:
        os.close(read_end)


def test_card_commands_refuse_a_loose_pin_file(tmp_path: Path) -> None:
    """Refused before any reader is looked for: the PIN file is read first."""
    pin = secret(tmp_path / "pin", "123456\n", 0o644)
    result = CliRunner().invoke(cli, ["card", "pin", "verify", "--pin-file", str(pin)])
    assert result.exit_code == 2 and "0644" in result.output and str(pin) in result.output


def test_personalize_refuses_a_loose_token_file(tmp_path: Path) -> None:
    token = secret(tmp_path / "token", "ra_0123456789abcdef\n", 0o644)
    result = CliRunner().invoke(cli, ["card", "personalize", "--ra-url", "http://127.0.0.1:9",
                                      "--token-file", str(token), "--data", str(token)])
    assert result.exit_code == 2 and "0644" in result.output and str(token) in result.output


def test_gateway_key_passphrase_file_refused_when_loose(tmp_path: Path) -> None:
    from sscard.gateway.config import ConfigError, load_config

    secret(tmp_path / "hr-sign.pass", "correct horse\n", 0o644)
    config = tmp_path / "gateway.toml"
    config.write_text('[keys.hr-sign]\npassphrase_file = "hr-sign.pass"\nkey = "hr-sign.key"\n'
                      'certificate = "hr-sign.pem"\n')
    with pytest.raises(ConfigError, match="0644"):
        load_config(config)


def test_write_private_file_is_owner_only(tmp_path: Path, loose_umask: None) -> None:
    fresh = tmp_path / "fresh.txt"
    write_private_file(fresh, b"plaintext")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600 and fresh.read_bytes() == b"plaintext"
    existing = tmp_path / "existing.txt"
    existing.write_bytes(b"an older, longer content")
    existing.chmod(0o644)
    write_private_file(existing, b"new")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600 and existing.read_bytes() == b"new"


def test_decrypt_writes_the_plaintext_owner_only(tmp_path: Path, loose_umask: None) -> None:
    from tests.cms.pki import make_ca, make_leaf

    holder = make_leaf("CN=李四,serialNumber=11010519491231002X,C=CN",
                       make_ca("CN=Test SS CA,C=CN"),
                       key_usage=("key_encipherment", "data_encipherment"))
    (tmp_path / "pass").write_text("correct horse\n")
    (tmp_path / "pass").chmod(0o600)
    holder.key.store(tmp_path / "holder.key", b"correct horse")
    from sscard.x509.pem import der_to_pem

    (tmp_path / "holder.pem").write_bytes(der_to_pem(holder.cert.dump(), "CERTIFICATE"))
    (tmp_path / "doc.txt").write_bytes("养老金发放明细".encode())
    runner = CliRunner()
    enc = runner.invoke(cli, ["encrypt", "--to", str(tmp_path / "holder.pem"),
                              str(tmp_path / "doc.txt"), str(tmp_path / "doc.p7m")])
    assert enc.exit_code == 0, enc.output
    out = tmp_path / "plain.txt"
    dec = runner.invoke(cli, ["decrypt", "--key", str(tmp_path / "holder.key"), "--cert",
                              str(tmp_path / "holder.pem"), "--passphrase-file",
                              str(tmp_path / "pass"), str(tmp_path / "doc.p7m"), str(out)])
    assert dec.exit_code == 0, dec.output
    assert out.read_bytes() == "养老金发放明细".encode()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_ca_stored_passphrase_refused_when_loose(tmp_path: Path) -> None:
    """`ca init` stores a generated passphrase 0600; made readable by others, it is refused
    rather than used."""
    from ca.authority import CertificateAuthority, initialise
    from ca.config import default_config_text
    from sscard.audit import AuditLog

    home = tmp_path / "ca"
    config = tmp_path / "ca.toml"
    config.write_text(default_config_text("http://127.0.0.1:9"), encoding="utf-8")
    audit = AuditLog.at_home(home)
    result = initialise(home, config, audit=audit)
    assert result.passphrase_file is not None
    with CertificateAuthority.open(home, audit=audit):
        pass
    result.passphrase_file.chmod(0o644)
    with pytest.raises(click.UsageError, match="0644"):
        CertificateAuthority.open(home, audit=audit)
