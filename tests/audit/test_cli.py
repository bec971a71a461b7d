"""``sscard audit``: keygen, checkpoint, verify (exit 0 intact, 1 tampered, 2 unusable input),
show and prove, driven through the real command line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from sscard.audit.log import AuditLog, default_url, make_engine
from sscard.cli import cli
from sscard.keys.software import SoftwareKey

PASS = "correct horse battery staple"


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), "audit", *args])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A data directory with an audit key, its certificate, and a log of 12 records."""
    (tmp_path / "pass.txt").write_text(PASS + "\n")
    (tmp_path / "pass.txt").chmod(0o600)  # a secret file: owner only
    result = run(tmp_path, "keygen", "--key-out", str(tmp_path / "audit-key.pem"),
                 "--cert-out", str(tmp_path / "audit-cert.pem"),
                 "--subject", "CN=审计签名,O=社保厅,C=CN",
                 "--passphrase-file", str(tmp_path / "pass.txt"))
    assert result.exit_code == 0, result.output
    key = SoftwareKey.load(tmp_path / "audit-key.pem", PASS.encode())
    log = AuditLog.open(default_url(tmp_path), signer=key, checkpoint_every=5)
    for i in range(1, 13):
        log.append("officer:1", "cert.issue", f"serial:{i}", "success", f"req-{i}", {"i": i})
    log.engine.dispose()
    return tmp_path


def checkpoint(home: Path, *extra: str) -> Result:
    return run(home, "checkpoint", "--key", str(home / "audit-key.pem"),
               "--passphrase-file", str(home / "pass.txt"),
               "--cert", str(home / "audit-cert.pem"), *extra)


def test_checkpoint_verify_show_prove_on_an_intact_log(home: Path) -> None:
    result = checkpoint(home, "--out", str(home / "cp.json"))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("checkpoint 3: size 12 root ")
    assert json.loads((home / "cp.json").read_text())["body"].startswith(
        "sscard-audit-checkpoint/v1\n")

    result = run(home, "verify", "--cert", str(home / "audit-cert.pem"),
                 "--checkpoint", str(home / "cp.json"))
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("12 records, 3 checkpoints, sm3: intact")

    result = run(home, "show", "--from", "11")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 2 and " success  officer:1 cert.issue serial:11 req-11 " in lines[0]

    result = run(home, "prove", "--seq", "7", "--cert", str(home / "audit-cert.pem"))
    assert result.exit_code == 0, result.output
    proof = json.loads(result.output)
    assert (proof["verified"], proof["tree_size"], proof["checkpoint"]) == (True, 12, 3)
    assert proof["checkpoint_signature"] == "valid"
    result = run(home, "prove", "--seq", "3", "--checkpoint", str(home / "cp.json"))
    assert result.exit_code == 0, result.output


def test_verify_reports_tampering_with_exit_1(home: Path) -> None:
    assert checkpoint(home, "--out", str(home / "cp.json")).exit_code == 0
    with sqlite3.connect(home / "audit.sqlite") as db:
        db.execute("UPDATE audit_record SET actor = 'officer:2' WHERE seq = 4")
    result = run(home, "verify", "--cert", str(home / "audit-cert.pem"))
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "modified: record 4: its content does not match its hash (edited after it was written)")
    assert "TAMPERED (1 finding(s))" in result.output

    with sqlite3.connect(home / "audit.sqlite") as db:  # now cut the tail and its checkpoint
        db.execute("UPDATE audit_record SET actor = 'officer:1' WHERE seq = 4")
        db.execute("DELETE FROM audit_record WHERE seq > 10")
        db.execute("DELETE FROM audit_checkpoint WHERE tree_size > 10")
        db.execute("UPDATE audit_head SET size = 10, last_hash = "
                   "(SELECT hash FROM audit_record WHERE seq = 10)")
    assert run(home, "verify", "--cert", str(home / "audit-cert.pem")).exit_code == 0
    result = run(home, "verify", "--cert", str(home / "audit-cert.pem"), "--json",
                 "--checkpoint", str(home / "cp.json"))
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert [(f["kind"], f["seq"]) for f in report["findings"]] == [("truncated", 11)]


def test_prove_fails_with_a_foreign_certificate(home: Path, tmp_path: Path) -> None:
    assert checkpoint(home).exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "p").write_text("x\n")
    (other / "p").chmod(0o600)  # a secret file: owner only
    assert run(other, "keygen", "--key-out", str(other / "k.pem"), "--cert-out",
               str(other / "c.pem"), "--passphrase-file", str(other / "p")).exit_code == 0
    result = run(home, "prove", "--seq", "2", "--cert", str(other / "c.pem"))
    assert result.exit_code == 1
    out = json.loads(result.output)
    assert (out["verified"], out["checkpoint_signature"]) == (True, "INVALID")


def test_prove_fails_against_a_tampered_entry(home: Path) -> None:
    assert checkpoint(home).exit_code == 0
    engine = make_engine(default_url(home))
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_record SET hash = :h WHERE seq = 9"), {"h": b"\0" * 32})
    engine.dispose()
    result = run(home, "prove", "--seq", "9")
    assert result.exit_code == 1
    assert json.loads(result.output)["verified"] is False


@pytest.mark.parametrize(("setup", "args", "message"), [
    ("none", ["verify"], "no audit database at"),
    ("foreign", ["verify"], "holds no audit log"),
    ("log", ["verify", "--cert", "garbage.pem"], "audit certificate"),
    ("log", ["verify", "--cert", "missing.pem"], "cannot read certificate"),
    ("log", ["verify", "--checkpoint", "garbage.pem"], "checkpoint file is not JSON"),
    ("log", ["verify", "--db", "nonsense://"], "cannot use database"),
    ("log", ["prove", "--seq", "3"], "the log has no checkpoint yet"),
    ("none", ["show"], "no audit database at"),
])
def test_unusable_input_exits_2(tmp_path: Path, setup: str, args: list[str],
                                message: str) -> None:
    (tmp_path / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n")
    if setup == "foreign":
        with sqlite3.connect(tmp_path / "audit.sqlite") as db:
            db.execute("CREATE TABLE something_else (x)")
    elif setup == "log":
        AuditLog.open(default_url(tmp_path)).append("a", "b", "c", "info")
    args = [str(tmp_path / a) if a.endswith(".pem") else a for a in args]
    result = run(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_checkpoint_refuses_a_wrong_passphrase_or_foreign_certificate(home: Path,
                                                                      tmp_path: Path) -> None:
    (home / "wrong.txt").write_text("wrong\n")
    (home / "wrong.txt").chmod(0o600)  # a secret file: owner only
    result = run(home, "checkpoint", "--key", str(home / "audit-key.pem"),
                 "--passphrase-file", str(home / "wrong.txt"))
    assert result.exit_code == 2
    assert "audit key" in result.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "p").write_text("x\n")
    (other / "p").chmod(0o600)  # a secret file: owner only
    assert run(other, "keygen", "--key-out", str(other / "k.pem"), "--cert-out",
               str(other / "c.pem"), "--passphrase-file", str(other / "p")).exit_code == 0
    result = run(home, "checkpoint", "--key", str(home / "audit-key.pem"),
                 "--passphrase-file", str(home / "pass.txt"), "--cert", str(other / "c.pem"))
    assert result.exit_code == 2
    assert "does not certify the audit signing key" in result.output


def test_the_installed_command_verifies_a_postgresql_log(pg_cluster: object,
                                                         audit_key: SoftwareKey) -> None:
    """End to end through the installed ``sscard`` entry point, on PostgreSQL."""
    url = pg_cluster.create_database("audit_cli")  # type: ignore[attr-defined]
    try:
        log = AuditLog.open(url, signer=audit_key, checkpoint_every=3)
        for i in range(7):
            log.append("gateway", "sign", f"doc:{i}", "success")
        log.engine.dispose()
        exe = Path(sys.executable).with_name("sscard")
        ok = subprocess.run([str(exe), "audit", "verify", "--db", url], capture_output=True,
                            text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        assert "7 records, 2 checkpoints, sm3: intact" in ok.stdout
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_record WHERE seq = 2"))
        engine.dispose()
        bad = subprocess.run([str(exe), "audit", "verify", "--db", url], capture_output=True,
                             text=True, timeout=60)
        assert bad.returncode == 1
        assert "deleted: record 2 deleted" in bad.stdout
    finally:
        pg_cluster.drop_database(url)  # type: ignore[attr-defined]
