"""The command-line conventions every group follows (issue 14): ``--home`` before or after the
group, help text on every command and option, one error prefix."""

from __future__ import annotations

import json
import os
import re
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
        "no audit database": run("audit", "verify", "--db-url",
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


def test_kmc_caller_add_refuses_an_existing_key_out_before_creating_the_caller(
        tmp_path: Path) -> None:
    existing = tmp_path / "existing.key"
    existing.write_text("someone else's file\n")
    refused = run("--home", tmp_path / "kmc", "kmc", "caller", "add", "station-1", "--role", "ra",
                  "--key-out", existing)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr and str(existing) in refused.stderr
    assert existing.read_text() == "someone else's file\n"
    # nothing was registered: the same name can be added, and its key is the only copy
    fresh = tmp_path / "fresh.key"
    added = run("--home", tmp_path / "kmc", "kmc", "caller", "add", "station-1", "--role", "ra",
                "--key-out", fresh)
    assert added.returncode == 0, added.stderr
    assert fresh.stat().st_mode & 0o777 == 0o600 and len(fresh.read_text().strip()) >= 32


def test_key_list_skips_signatures_and_other_files(tmp_path: Path) -> None:
    pf = tmp_path / "pf"
    pf.write_text("a passphrase\n")
    pf.chmod(0o600)
    assert run("key", "generate", "--out", tmp_path / "k.pem", "--passphrase-file", pf,
               cwd=tmp_path).returncode == 0
    (tmp_path / "doc.txt").write_text("hello\n")
    assert run("csr", "create", "--key", tmp_path / "k.pem", "--passphrase-file", pf,
               "--subject", "CN=test", "--out", tmp_path / "req.pem").returncode == 0
    (tmp_path / "junk.p7s").write_bytes(b"\x30\x82\xff\xff" + bytes(64))
    (tmp_path / "pem.p7s").write_text("-----BEGIN PKCS7-----\nMIIB\n-----END PKCS7-----\n")
    res = run("key", "list", "--dir", ".", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert [k["file"] for k in json.loads(res.stdout)["software"]["keys"]] == ["k.pem"]


# -- --format json on every list and show command ---------------------------------------------

def command_tree(cmd: click.Command, path: tuple[str, ...] = ()
                 ) -> list[tuple[tuple[str, ...], click.Command]]:
    if not isinstance(cmd, click.Group):
        return [(path, cmd)]
    ctx = click.Context(cmd, info_name=path[-1] if path else "sscard")
    found = []
    for name in cmd.list_commands(ctx):
        sub = cmd.get_command(ctx, name)
        if sub is not None:
            found.extend(command_tree(sub, (*path, name)))
    return found


LIST_OR_SHOW = [path for path, _ in command_tree(cli) if path[-1] in ("list", "show")]


def test_the_tree_has_list_and_show_commands() -> None:
    assert {("ca", "list"), ("ca", "show"), ("key", "list"), ("x509", "show"),
            ("audit", "show")} <= set(LIST_OR_SHOW)


@pytest.mark.parametrize("path", LIST_OR_SHOW, ids=" ".join)
def test_every_list_and_show_command_takes_format_json(path: tuple[str, ...]) -> None:
    cmd = dict(command_tree(cli))[path]
    option = next((p for p in cmd.params if "--format" in getattr(p, "opts", ())), None)
    assert isinstance(option, click.Option), f"sscard {' '.join(path)} has no --format"
    assert isinstance(option.type, click.Choice) and "json" in option.type.choices


@pytest.fixture(scope="module")
def ca_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    base = tmp_path_factory.mktemp("ca-json")
    home = base / "home"
    init = subprocess.run([*SSCARD, "--home", home, "ca", "init", "--passphrase-stdin"],
                          input="a ca passphrase\n", capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    pf = base / "pf"
    pf.write_text("a key passphrase\n")
    pf.chmod(0o600)
    assert run("key", "generate", "--out", base / "k.pem", "--passphrase-file", pf).returncode == 0
    assert run("csr", "create", "--key", base / "k.pem", "--passphrase-file", pf, "--subject",
               "CN=张三,serialNumber=350102199001011238", "--out", base / "req.pem"
               ).returncode == 0
    issued = subprocess.run([*SSCARD, "--home", home, "ca", "issue", "--profile",
                             "cardholder-sign", "--csr", base / "req.pem", "--out",
                             base / "cert.pem", "--passphrase-stdin"], input="a ca passphrase\n",
                            capture_output=True, text=True, timeout=120)
    assert issued.returncode == 0, issued.stderr
    serial = issued.stdout.split("serial=")[1].split()[0]
    return home, serial, base / "cert.pem"


def test_list_and_show_print_valid_json(ca_home: tuple[Path, str, Path], tmp_path: Path) -> None:
    home, serial, cert = ca_home
    argv = {
        ("ca", "list"): ["ca", "list"],
        ("ca", "show"): ["ca", "show", serial, "--out", str(tmp_path / "shown.pem")],
        ("ca", "principal", "list"): ["ca", "principal", "list"],
        ("key", "list"): ["key", "list", "--dir", str(cert.parent)],
        ("kmc", "cardkeys", "list"): ["kmc", "cardkeys", "list"],
        ("x509", "show"): ["x509", "show", str(cert)],
        ("audit", "show"): ["audit", "show"],
        ("idp", "client", "list"): ["idp", "client", "list"],
        ("idp", "keys", "list"): ["idp", "keys", "list"],
    }
    assert set(argv) == set(LIST_OR_SHOW), "a new list/show command: add how to run it here"
    for path, args in argv.items():
        res = run("--home", home, *args, "--format", "json")
        assert res.returncode == 0, (path, res.stderr)
        if path == ("audit", "show"):  # one JSON object a line (a log can be long)
            parsed = [json.loads(line) for line in res.stdout.splitlines()]
        else:
            parsed = json.loads(res.stdout)
        assert isinstance(parsed, list | dict), path
    shown = json.loads(run("--home", home, "ca", "show", serial, "--format", "json").stdout)
    assert shown["serial"] == serial and shown["status"] == "good"
    assert (tmp_path / "shown.pem").read_text() == shown["certificate"]
    listed = json.loads(run("--home", home, "ca", "list", "--format", "json").stdout)
    assert listed[0]["subject"].startswith("CN=张三")


# -- one exit-code table, documented ---------------------------------------------------------

def test_the_exit_code_table_in_docs_cli_is_the_one_in_code() -> None:
    from sscard.exitcodes import Exit

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    documented = {int(m[0]): m[1] for m in re.findall(r"^\| (\d+) \| ([A-Z_]+) \|", text,
                                                      re.MULTILINE)}
    assert documented == {e.value: e.name for e in Exit}


def test_groups_name_their_exit_codes_from_the_one_table() -> None:
    from reader_tools import session
    from sscard.audit import cli as audit_cli
    from sscard.backup import cli as backup_cli
    from sscard.exitcodes import Exit
    from sscard.gateway import cli as gateway_cli
    from sscard.validation import cli as validation_cli

    assert (validation_cli.EXIT_VALID, validation_cli.EXIT_NOT_VALID,
            validation_cli.EXIT_UNUSABLE) == (Exit.OK, Exit.REFUSED, Exit.USAGE)
    assert (audit_cli.EXIT_TAMPERED, backup_cli.EXIT_DAMAGED, gateway_cli.EXIT_NOT_VALID) == \
        (Exit.REFUSED,) * 3
    assert (session.EXIT_NO_READER, session.EXIT_CARD_MISMATCH) == (Exit.NO_READER,
                                                                   Exit.CARD_MISMATCH)


# -- shell completion ------------------------------------------------------------------------

def test_bash_completion_script_is_produced_and_completes(tmp_path: Path) -> None:
    source = subprocess.run([*SSCARD], env={**os.environ, "_SSCARD_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=120)
    assert source.returncode == 0 and "complete -o nosort -F" in source.stdout, source.stderr
    words = subprocess.run([*SSCARD], env={**os.environ, "_SSCARD_COMPLETE": "bash_complete",
                                           "COMP_WORDS": "sscard ca li", "COMP_CWORD": "2"},
                           capture_output=True, text=True, timeout=120)
    assert "plain,list" in words.stdout.split(), words.stdout


def test_ca_db_url_after_the_group_names_the_ca_database(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere.db"
    home = tmp_path / "home"
    init = subprocess.run([*SSCARD, "--home", home, "ca", "--db-url", f"sqlite:///{db}", "init",
                           "--passphrase-stdin"], input="a ca passphrase\n",
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    assert db.exists() and not (home / "ca.db").exists()
    listed = run("ca", "--home", home, "--db-url", f"sqlite:///{db}", "list", "--format", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    refused = run("--home", home, "ca", "--db-url", "postgresql+psycopg://ca:pw@db/ca", "list")
    assert refused.returncode == 2 and "carries a password" in refused.stderr
