"""Issue 12 finding 1, offline side: CA-level profiles only through ``sscard ca issue`` on the
CA's home under dual control, and the access file managed by ``sscard ca principal/admin``.

Everything goes through the real command line (click's runner) on a real CA home; the
administrators' keys are real encrypted key files.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ca.authorization import access_path, hash_token, load_access
from ca.dual_control import ApprovalError, IssueIntent, check_approvals, sign_approval
from sscard.cli import cli
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.parse import load_certificate
from sscard.x509.pem import der_to_pem
from tests.ca.conftest import write_config

PASS = b"admin passphrase 1"


def run(home: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], input=stdin,
                              catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("dual")
    home = base / "home"
    ok(run(home, "ca", "init", "--config", str(write_config(base / "ca.toml", "ec-p256"))))
    return home


@pytest.fixture(scope="module")
def admins(home: Path) -> dict[str, Path]:
    """Three administrators with keys of their own, registered by public key."""
    keys = {}
    for name in ("alice", "bob", "carol"):
        key = SoftwareKey.generate("sm2")
        path = home.parent / f"{name}.key.pem"
        key.store(path, PASS)
        pub = home.parent / f"{name}.pub.pem"
        pub.write_bytes(der_to_pem(key.public_key().spki_der(), "PUBLIC KEY"))
        if name != "carol":  # carol is not registered
            ok(run(home, "ca", "admin", "add", name, "--public-key", str(pub)))
        keys[name] = path
    return keys


def _csr(path: Path, subject: str = "CN=Second Issuing CA,C=CN") -> Path:
    key = SoftwareKey.generate("ec-p256")
    path.write_bytes(der_to_pem(CsrBuilder().subject(parse_name(subject)).sign(key).dump(),
                                "CERTIFICATE REQUEST"))
    return path


def _approve(home: Path, admin: str, key: Path, csr: Path, out: Path,
             profile: str = "sub-ca") -> Path:
    ok(run(home, "ca", "approve", "--profile", profile, "--csr", str(csr), "--admin", admin,
           "--key", str(key), "--out", str(out), "--passphrase-stdin",
           stdin=PASS.decode() + "\n"))
    return out


def test_sub_ca_needs_two_distinct_administrators(home: Path, admins: dict[str, Path],
                                                  tmp_path: Path) -> None:
    csr = _csr(tmp_path / "sub.csr")
    out = tmp_path / "sub.pem"
    issue = ["ca", "issue", "--profile", "sub-ca", "--csr", str(csr), "--out", str(out)]

    none = run(home, *issue)
    assert none.exit_code == 1 and "needs approvals by 2 distinct administrators" in none.output
    a1 = _approve(home, "alice", admins["alice"], csr, tmp_path / "a1.json")
    one = run(home, *issue, "--approval", str(a1))
    assert one.exit_code == 1 and "valid: alice" in one.output
    # one person approving twice is still one approval
    a2 = _approve(home, "alice", admins["alice"], csr, tmp_path / "a2.json")
    twice = run(home, *issue, "--approval", str(a1), "--approval", str(a2))
    assert twice.exit_code == 1 and "alice already approved" in twice.output
    assert not out.exists()

    b1 = _approve(home, "bob", admins["bob"], csr, tmp_path / "b1.json")
    issued = ok(run(home, *issue, "--approval", str(a1), "--approval", str(b1)))
    assert "dual control: approved by alice, bob" in issued
    cert = load_certificate(out.read_bytes())
    assert cert.ca
    # the refusals and the approval are in the tamper-evident log, with who approved
    from sscard.audit import AuditLog, default_url

    records = [r.record for r in AuditLog.open(default_url(home)).records()
               if r.record.action == "ca.issue.dual_control"]
    assert [r.outcome for r in records][-4:] == ["denied", "denied", "denied", "success"]
    assert records[-1].details["approvers"] == ["alice", "bob"]


def test_approvals_bind_the_request_and_the_administrator(
        home: Path, admins: dict[str, Path], tmp_path: Path) -> None:
    csr = _csr(tmp_path / "ocsp.csr", "CN=Rogue OCSP,C=CN")
    other = _csr(tmp_path / "other.csr", "CN=Another,C=CN")
    a = _approve(home, "alice", admins["alice"], csr, tmp_path / "a.json", "ocsp-signer")
    b_other = _approve(home, "bob", admins["bob"], other, tmp_path / "b.json", "ocsp-signer")
    b_profile = _approve(home, "bob", admins["bob"], csr, tmp_path / "b2.json", "tsa")
    out = tmp_path / "ocsp.pem"
    issue = ["ca", "issue", "--profile", "ocsp-signer", "--csr", str(csr), "--out", str(out),
             "--approval", str(a)]
    wrong_csr = run(home, *issue, "--approval", str(b_other))
    assert wrong_csr.exit_code == 1 and "approves another request_sha256" in wrong_csr.output
    wrong_profile = run(home, *issue, "--approval", str(b_profile))
    assert wrong_profile.exit_code == 1 and "approves another profile" in wrong_profile.output
    # a forged approval: bob's name, alice's signature
    forged_doc = json.loads(a.read_text())
    forged_doc["administrator"] = "bob"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(forged_doc))
    refused = run(home, *issue, "--approval", str(forged))
    assert refused.exit_code == 1 and "signature of bob does not verify" in refused.output
    # an unregistered administrator cannot even sign one
    carol = run(home, "ca", "approve", "--profile", "ocsp-signer", "--csr", str(csr),
                "--admin", "carol", "--key", str(admins["carol"]), "--out",
                str(tmp_path / "c.json"), "--passphrase-stdin", stdin=PASS.decode() + "\n")
    assert carol.exit_code != 0 and "not a registered administrator" in carol.output
    # alice's key under bob's name
    mismatch = run(home, "ca", "approve", "--profile", "ocsp-signer", "--csr", str(csr),
                   "--admin", "bob", "--key", str(admins["alice"]), "--out",
                   str(tmp_path / "m.json"), "--passphrase-stdin", stdin=PASS.decode() + "\n")
    assert mismatch.exit_code == 1 and "not the key registered for bob" in mismatch.output
    assert not out.exists()


def test_expired_approvals_do_not_count(home: Path, admins: dict[str, Path]) -> None:
    access = load_access(access_path(home))
    intent = IssueIntent.of("issuing", "tsa", b"request", {})
    old = datetime.now(UTC) - timedelta(days=2)
    approvals = [sign_approval(SoftwareKey.load(admins[n], PASS), n, intent, now=old)
                 for n in ("alice", "bob")]
    with pytest.raises(ApprovalError, match="expired"):
        check_approvals(access, intent, approvals)
    fresh = [sign_approval(SoftwareKey.load(admins[n], PASS), n, intent)
             for n in ("alice", "bob")]
    assert check_approvals(access, intent, fresh) == ["alice", "bob"]


def test_end_entity_profiles_need_no_approval(home: Path, tmp_path: Path) -> None:
    csr = _csr(tmp_path / "bs.csr", "CN=employment,O=就业登记系统,C=CN")
    ok(run(home, "ca", "issue", "--profile", "business-system", "--csr", str(csr), "--out",
           str(tmp_path / "bs.pem")))


def test_principal_commands_manage_the_access_file(home: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "ra.token"
    out = ok(run(home, "ca", "principal", "add", "ra-batch", "--ra", "--token-out",
                 str(token_file)))
    assert "API token written" in out
    assert token_file.stat().st_mode & 0o077 == 0
    token = token_file.read_text().strip()
    assert token not in out
    access = load_access(access_path(home))
    principal = access.principals["ra-batch"]
    assert principal.token_sha256 == hash_token(token)
    assert set(principal.profiles) == {"cardholder-sign", "cardholder-encrypt",
                                       "business-system"}
    assert token not in access_path(home).read_text()
    listed = ok(run(home, "ca", "principal", "list"))
    assert "ra-batch\tattest-pop,issue,revoke,status" in listed

    # CA-level profiles cannot be granted; a duplicate name needs --replace
    for profile in ("sub-ca", "ocsp-signer", "tsa", "service"):
        refused = run(home, "ca", "principal", "add", "greedy", "--operation", "issue",
                      "--profile", profile, "--token-out", str(tmp_path / "g.token"))
        assert refused.exit_code == 2 and "CA-level" in refused.output
    again = run(home, "ca", "principal", "add", "ra-batch", "--ra", "--token-out",
                str(tmp_path / "x.token"))
    assert again.exit_code == 2 and "--replace" in again.output
    # an officer certificate cannot be a principal
    officer_key = SoftwareKey.generate("ec-p256")
    csr = tmp_path / "officer.csr"
    csr.write_bytes(der_to_pem(CsrBuilder().subject(parse_name("CN=zhao,O=人社厅,C=CN"))
                               .sign(officer_key).dump(), "CERTIFICATE REQUEST"))
    ok(run(home, "ca", "issue", "--profile", "ra-officer", "--csr", str(csr), "--out",
           str(tmp_path / "officer.pem")))
    refused = run(home, "ca", "principal", "add", "zhao", "--ra", "--certificate",
                  str(tmp_path / "officer.pem"))
    assert refused.exit_code == 2 and "not a certificate of profile service" in refused.output
    refused = run(home, "ca", "principal", "add", "zhao", "--ra", "--certificate",
                  str(tmp_path / "officer.pem"), "--certificate-profile", "ra-officer")
    assert refused.exit_code == 1 and "officers act only through the RA" in refused.output

    ok(run(home, "ca", "principal", "remove", "ra-batch"))
    assert "ra-batch" not in load_access(access_path(home)).principals
    # each change is in the audit log
    audit = ok(run(home, "audit", "show"))
    assert "ca.principal.add" in audit and "ca.principal.remove" in audit


def test_serve_refuses_a_bad_access_file_before_serving(home: Path, tmp_path: Path) -> None:
    access = tmp_path / "access.toml"
    access.write_text('[principals.greedy]\noperations = ["issue"]\nprofiles = ["sub-ca"]\n'
                      f'token_sha256 = "{"a" * 64}"\n', encoding="utf-8")
    refused = run(home, "ca", "serve", "--port", "1", "--access", str(access), "--no-tsa")
    assert refused.exit_code == 1
    assert "sub-ca CA-level" in refused.output and "serving" not in refused.output
