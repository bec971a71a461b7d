"""The command-line conventions every group follows (issue 14): ``--home`` before or after the
group, help text on every command and option, one error prefix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from sscard.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SSCARD = [sys.executable, "-m", "sscard.cli"]


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SSCARD, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_home_after_the_group_is_the_same_as_before(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    pf = tmp_path / "pf"
    pf.write_text("a passphrase\n")
    pf.chmod(0o600)
    subprocess.run([*SSCARD, "key", "generate", "--out", home / "keys" / "k.pem",
                    "--passphrase-file", pf], check=True, capture_output=True, timeout=120)
    before = subprocess.run([*SSCARD, "--home", home, "key", "list", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    after = subprocess.run([*SSCARD, "key", "--home", home, "list", "--json"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert before.returncode == 0 and "k.pem" in before.stdout
    assert after.returncode == 0 and after.stdout == before.stdout
    neither = subprocess.run([*SSCARD, "key", "list", "--json"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert "k.pem" not in neither.stdout


def undocumented(cmd: click.Command, path: str) -> list[str]:
    """The commands and options under ``cmd`` that have no help text."""
    missing = [] if (cmd.help or cmd.short_help) else [path]
    missing += [f"{path} {param.opts[0]}" for param in cmd.params
                if isinstance(param, click.Option) and not param.hidden and not param.help]
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{path} {name}"
            missing += undocumented(sub, f"{path} {name}")
    return missing


def test_every_command_and_option_has_help() -> None:
    """Issue 14: help text on every command and option, in every group."""
    assert undocumented(cli, "sscard") == []


@pytest.fixture()
def junk(tmp_path: Path) -> Path:
    path = tmp_path / "junk.der"
    path.write_bytes(b"junk")
    return path


@pytest.fixture()
def trust(tmp_path: Path) -> Path:
    cert = tmp_path / "root.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=Test Root",
                    "-keyout", tmp_path / "root.key", "-out", cert], check=True,
                   capture_output=True, timeout=60)
    return cert


def test_unusable_input_is_one_error_form_in_every_group(tmp_path: Path, junk: Path,
                                                          trust: Path) -> None:
    """audit, admin, x509 and the gateway's verify printed ``error:`` where click prints
    ``Error:``; each still exits 2 for input it cannot use, and names the problem."""
    pf = tmp_path / "pf"
    pf.write_text("a passphrase\n")
    pf.chmod(0o600)
    cases = {
        "no audit database": run("audit", "verify", "--db",
                                 f"sqlite:///{tmp_path / 'absent' / 'audit.sqlite'}"),
        "not an sscard backup": run("admin", "verify-backup", junk, "--passphrase-file", pf),
        "malformed certificate": run("x509", "verify", junk, "--trust", trust),
        f"{junk}: ": run("verify", junk, "--trust", trust),
    }
    for problem, proc in cases.items():
        assert proc.returncode == 2, (problem, proc.stderr)
        assert proc.stderr.startswith("Error: "), (problem, proc.stderr)
        assert problem in proc.stderr


# -- ca init: the base URL, the hierarchy sample's failures ------------------------------------

def test_ca_init_says_which_base_url_it_writes_into_certificates(tmp_path: Path) -> None:
    default = subprocess.run(
        [*SSCARD, "--home", tmp_path / "a", "ca", "init", "--passphrase-stdin"], cwd=tmp_path,
        input="a ca passphrase\n", capture_output=True, text=True, timeout=120)
    assert default.returncode == 0, default.stderr
    assert "http://127.0.0.1:8080" in default.stdout and "--base-url" in default.stdout
    given = subprocess.run(
        [*SSCARD, "--home", tmp_path / "b", "ca", "init", "--passphrase-stdin",
         "--base-url", "http://ca.hrss.example"], cwd=tmp_path,
        input="a ca passphrase\n", capture_output=True, text=True, timeout=120)
    assert given.returncode == 0, given.stderr
    assert "base URL http://ca.hrss.example" in given.stdout
    chain = tmp_path / "chain.pem"
    assert run("--home", tmp_path / "b", "ca", "certs", "--out", chain).returncode == 0
    shown = run("x509", "show", chain)
    assert "http://ca.hrss.example/crl/root.crl" in shown.stdout


@pytest.mark.parametrize("url", ["ca.hrss.example", "ftp://ca.hrss.example", "http://"])
def test_ca_init_refuses_an_unusable_base_url_and_creates_nothing(tmp_path: Path,
                                                                  url: str) -> None:
    res = run("--home", tmp_path / "h", "ca", "init", "--base-url", url)
    assert res.returncode == 2 and "base URL" in res.stderr, res.stderr
    assert not (tmp_path / "h").exists()


def test_ca_init_with_an_unreachable_database_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "h.toml"
    cfg.write_text('[root]\nname = "root"\nsubject = "CN=R,C=CN"\nalgorithm = "sm2"\n'
                   'validity_days = 100\n[[issuing]]\nname = "issuing"\nsubject = "CN=I,C=CN"\n'
                   'algorithm = "sm2"\nvalidity_days = 50\n'
                   '[database]\nurl = "postgresql+psycopg://ca@db.invalid/ca"\n')
    res = run("--home", tmp_path / "h", "ca", "init", "--config", cfg)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("Error: ") and "database" in res.stderr and "db.invalid" in \
        res.stderr, res.stderr


def test_ca_init_sm2_on_a_token_without_sm2_says_so(tmp_path: Path) -> None:
    from tests.softhsm import create_token

    token = create_token("ca-docs")
    cfg = tmp_path / "h.toml"
    cfg.write_text('[root]\nname = "root"\nsubject = "CN=R,C=CN"\nalgorithm = "sm2"\n'
                   'validity_days = 100\n[[issuing]]\nname = "issuing"\nsubject = "CN=I,C=CN"\n'
                   'algorithm = "sm2"\nvalidity_days = 50\n'
                   f'[issuing.pkcs11]\nmodule = "{token.module}"\ntoken = "{token.label}"\n'
                   f'label = "issuing"\npin_file = "{token.pin_file}"\n')

    res = subprocess.run([*SSCARD, "--home", tmp_path / "h", "ca", "init", "--config", cfg],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SOFTHSM2_CONF": str(token.conf)})
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "has no SM2" in res.stderr, res.stderr
