"""`sscard ra ...` through the installed command: officer and client set-up, secrets from files
only, clear refusals."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ra.errors import AuthenticationFailed
from ra.service import RegistrationAuthority
from ra.store import default_url
from sscard.audit.log import AuditLog
from sscard.audit.log import default_url as audit_url


def sscard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sscard.cli", "--home", str(home), "ra", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_set_up_officers_and_clients(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "pw").write_text("a long enough password\n")
    (tmp_path / "pw").chmod(0o600)  # a secret file: owner only
    done = sscard(home, "add-officer", "zhang", "--role", "officer", "--role", "auditor",
                  "--display-name", "张审核", "--person-id", "110101198001010011",
                  "--password-file", str(tmp_path / "pw"))
    assert done.returncode == 0, done.stderr
    assert "a long enough password" not in done.stdout + done.stderr
    again = sscard(home, "add-officer", "zhang", "--role", "officer",
                   "--person-id", "110101198001010011", "--password-file", str(tmp_path / "pw"))
    assert again.returncode == 1 and "already exists" in again.stderr
    (tmp_path / "short").write_text("short\n")
    (tmp_path / "short").chmod(0o600)  # a secret file: owner only
    short = sscard(home, "add-officer", "li", "--role", "officer",
                   "--person-id", "110101198001010022", "--password-file", str(tmp_path / "short"))
    assert short.returncode == 1 and "at least 10" in short.stderr
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n"
                                      "-----END CERTIFICATE-----\n")
    bad = sscard(home, "officer-cert", "zhang", str(tmp_path / "bad.pem"))
    assert bad.returncode == 1 and "certificate" in bad.stderr.lower()
    missing = sscard(home, "officer-cert", "nobody", str(tmp_path / "bad.pem"))
    assert missing.returncode == 1
    token_file = tmp_path / "station.token"
    client = sscard(home, "add-client", "station-1", "--token-out", str(token_file))
    assert client.returncode == 0, client.stderr
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in client.stdout + client.stderr

    ra = RegistrationAuthority.open(default_url(home), AuditLog.open(audit_url(home)))
    try:
        actor = ra.authenticate("zhang", "a long enough password")
        assert {r.value for r in actor.roles} == {"officer", "auditor"}
        assert ra.authenticate_client(token).name == "station-1"
        # the set-up is in the audit log
        actions = [r.record.action for r in ra.audit.records()]
        assert "ra.officer.add" in actions and "ra.client.add" in actions
    finally:
        ra.close()


def test_officer_unlock_from_the_console(tmp_path: Path) -> None:
    """Finding 9: anyone could lock the only administrator out for good; the console lifts
    every lock-out of the account, and says so in the audit log."""
    home = tmp_path / "home"
    (tmp_path / "pw").write_text("the admin password\n")
    (tmp_path / "pw").chmod(0o600)
    assert sscard(home, "add-officer", "root", "--role", "administrator", "--person-id",
                  "110101198001010033", "--password-file",
                  str(tmp_path / "pw")).returncode == 0
    ra = RegistrationAuthority.open(default_url(home), AuditLog.open(audit_url(home)))
    try:
        for source in ("203.0.113.1", "203.0.113.2"):
            for _ in range(ra.config.max_failed_logins):
                with pytest.raises(AuthenticationFailed):
                    ra.authenticate("root", "guessing", source)
            with pytest.raises(AuthenticationFailed):
                ra.authenticate("root", "the admin password", source)
        assert [o["locked"] for o in ra.officers(ra.authenticate(
            "root", "the admin password", "198.51.100.7"))] == [True]
    finally:
        ra.close()
    done = sscard(home, "officer", "unlock", "root")
    assert done.returncode == 0, done.stderr
    missing = sscard(home, "officer", "unlock", "nobody")
    assert missing.returncode == 1 and "no officer named 'nobody'" in missing.stderr
    ra = RegistrationAuthority.open(default_url(home), AuditLog.open(audit_url(home)))
    try:
        for source in ("203.0.113.1", "203.0.113.2"):
            assert ra.authenticate("root", "the admin password", source).name == "root"
        unlocks = {(r.record.actor, r.record.object, r.record.outcome)
                   for r in ra.audit.records() if r.record.action == "ra.officer.unlock"}
        assert ("console", "root", "success") in unlocks
        assert ("console", "nobody", "success") not in unlocks
    finally:
        ra.close()


def test_serve_needs_the_kmc_shares(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("x\n")
    (tmp_path / "k").chmod(0o600)  # a secret file: owner only
    out = sscard(tmp_path, "serve", "--kmc-ra-key-file", str(tmp_path / "k"))
    assert out.returncode == 2 and "--share" in out.stderr
