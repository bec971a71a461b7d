"""Every command that changes state records itself in the tamper-evident audit log, because the
domain objects (CA, KMC, RA) write the records whatever the entry point: each command's record
is found with ``sscard audit show`` and ``sscard audit verify`` passes. And no record, no
operation: with the audit log unusable, the CA issues nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from sscard.cli import cli
from sscard.crypto.sm2 import SM2PrivateKey
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem
from tests.pg import pg_cluster  # noqa: F401  (fixture)


def run(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False,
                              env={**_AUDIT_ENV, **(env or {})})


# where the commands' audit log lives: <home>/audit.sqlite, or PostgreSQL for one test
_AUDIT_ENV: dict[str, str] = {}


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def show(home: Path, *filters: str) -> list[dict[str, Any]]:
    out = ok(run(home, "audit", "show", "--format", "json", *filters))
    return [json.loads(line) for line in out.splitlines()]


def outcomes(home: Path, action: str) -> list[tuple[str, str]]:
    return [(r["action"], r["outcome"]) for r in show(home, "--action", action)]


def verified(home: Path) -> None:
    out = ok(run(home, "audit", "verify"))
    assert "intact" in out


def _secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def _csr(tmp_path: Path) -> Path:
    key = SoftwareKey.generate("sm2")
    csr = CsrBuilder().subject(parse_name(
        "CN=张三,serialNumber=350102199001011238,C=CN")).sign(key)
    path = tmp_path / "holder.csr"
    path.write_bytes(der_to_pem(csr.dump(), "CERTIFICATE REQUEST"))
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_db(request: pytest.FixtureRequest) -> Iterator[None]:
    """The audit log in the data directory, or on PostgreSQL ($SSCARD_AUDIT_DB_URL)."""
    if request.param == "sqlite":
        yield
        return
    cluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database("audit_cli")
    _AUDIT_ENV["SSCARD_AUDIT_DB_URL"] = url
    try:
        yield
    finally:
        _AUDIT_ENV.clear()
        cluster.drop_database(url)


@pytest.mark.usefixtures("audit_db")
def test_ca_commands_are_audited(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(run(home, "ca", "init"))
    assert outcomes(home, "ca.hierarchy.init") == [("ca.hierarchy.init", "attempt"),
                                                   ("ca.hierarchy.init", "success")]
    out = ok(run(home, "ca", "issue", "--profile", "cardholder-sign", "--csr",
                 str(_csr(tmp_path)), "--out", str(tmp_path / "leaf.pem")))
    serial = out.split("serial=")[1].split()[0]
    issued = show(home, "--action", "ca.certificate.issue", "--outcome", "success")
    assert len(issued) == 1 and issued[0]["details"]["serials"] == [serial]
    assert issued[0]["actor"].startswith("cli:") and issued[0]["object"] == \
        "profile:cardholder-sign"

    # the old spelling is still taken on input; the one spelling is printed and recorded
    out = ok(run(home, "ca", "revoke", f"0x{serial.lower()}", "--reason", "key_compromise"))
    assert f"revoked serial={serial} reason=keyCompromise" in out
    asked = show(home, "--action", "ca.certificate.revoke", "--outcome", "attempt")
    assert [(r["object"], r["details"]["reason"]) for r in asked] == \
        [(f"serial:{serial}", "keyCompromise")]
    revoked = show(home, "--action", "ca.certificate.revoke", "--outcome", "success")
    assert [r["details"]["attempt_seq"] for r in revoked] == [asked[0]["seq"]]
    refused = run(home, "ca", "revoke", serial)
    assert refused.exit_code == 1 and "already revoked" in refused.output
    denied = show(home, "--action", "ca.certificate.revoke", "--outcome", "denied")
    assert len(denied) == 1 and "already revoked" in denied[0]["details"]["reason"]

    ok(run(home, "ca", "crl", "--out", str(tmp_path / "crl.pem")))
    crl = show(home, "--action", "ca.crl", "--outcome", "success")
    assert len(crl) == 1 and crl[0]["details"]["crl_number"] == 1
    # read-only commands write nothing
    before = len(show(home))
    ok(run(home, "ca", "list"))
    ok(run(home, "ca", "show", serial))
    assert len(show(home)) == before
    # filters by zone
    assert {r["action"].split(".")[0] for r in show(home, "--action", "ca")} == {"ca"}
    assert show(home, "--action", "kmc") == []
    assert show(home, "--action", "ca.cert") == []  # whole name segments only
    assert show(home, "--action", "ca.certificat_") == []  # "_" is no LIKE wildcard
    verified(home)
    # the records went where $SSCARD_AUDIT_DB_URL said, else to the data directory
    assert (home / "audit.sqlite").exists() == ("SSCARD_AUDIT_DB_URL" not in _AUDIT_ENV)


def test_ca_refuses_to_act_without_its_audit_record(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(run(home, "ca", "init"))
    # an audit database the CA cannot write to: a directory stands where the file should be
    (tmp_path / "audit-dir").mkdir()
    env = {"SSCARD_AUDIT_DB_URL": f"sqlite:///{tmp_path / 'audit-dir'}"}
    result = run(home, "ca", "issue", "--profile", "cardholder-sign", "--csr",
                 str(_csr(tmp_path)), "--out", str(tmp_path / "leaf.pem"), env=env)
    assert result.exit_code == 1 and "audit log" in result.output
    assert "nothing was done" in result.output
    assert not (tmp_path / "leaf.pem").exists()
    assert ok(run(home, "ca", "list")).strip() == ""  # nothing issued


def test_ca_refuses_when_the_attempt_cannot_be_recorded(tmp_path: Path) -> None:
    """The log opens, but its tables are gone when the CA asks for the attempt record."""
    import sqlalchemy as sa

    home = tmp_path / "home"
    ok(run(home, "ca", "init"))
    engine = sa.create_engine(f"sqlite:///{home / 'audit.sqlite'}")
    with engine.begin() as conn:  # an empty head: the log is there but unusable
        conn.exec_driver_sql("DELETE FROM audit_head")
    engine.dispose()
    result = run(home, "ca", "crl", "--out", str(tmp_path / "crl.pem"))
    assert result.exit_code == 1 and "audit" in result.output
    assert not (tmp_path / "crl.pem").exists()


def test_kmc_ceremony_callers_and_recovery_are_audited(tmp_path: Path) -> None:
    from keymgmt import ceremony
    from keymgmt.service import KeyManagementCentre
    from sscard.audit import AuditLog

    home = tmp_path / "home"
    names = ["zhang", "li", "wang"]
    args = ["kmc", "ceremony", "--threshold", "2", "--shares-dir", str(tmp_path / "shares"),
            "--officiant", "chief"]
    for n in names:
        args += ["--custodian", n, "--custodian-passphrase-file",
                 str(_secret(tmp_path / f"{n}.pass", f"{n} passphrase 1"))]
    ok(run(home, *args))
    attempt, = show(home, "--action", "kmc.ceremony.run", "--outcome", "attempt")
    assert attempt["actor"] == "chief" and attempt["details"]["custodians"] == names
    done, = show(home, "--action", "kmc.ceremony.run", "--outcome", "success")
    assert done["details"]["ceremony_id"] and done["details"]["storage_key_id"]

    def shares(*who: str) -> list[str]:
        out: list[str] = []
        for n in who:
            out += ["--share", str(next((tmp_path / "shares").glob(f"share-*-{n}.json"))),
                    "--share-passphrase-file", str(tmp_path / f"{n}.pass")]
        return out

    assert run(home, "kmc", "unseal", *shares("li")).exit_code == 1
    ok(run(home, "kmc", "unseal", *shares("li", "wang")))
    assert outcomes(home, "kmc.ceremony.unseal") == [
        ("kmc.ceremony.unseal", "attempt"), ("kmc.ceremony.unseal", "denied"),
        ("kmc.ceremony.unseal", "attempt"), ("kmc.ceremony.unseal", "success")]

    keys = {}
    for name, role in [("ca", "ca"), ("o1", "officer"), ("o2", "officer"), ("o3", "officer"),
                       ("gone", "auditor")]:
        keys[name] = tmp_path / f"{name}.key"
        ok(run(home, "kmc", "caller", "add", name, "--role", role, "--key-out",
               str(keys[name])))
    ok(run(home, "kmc", "caller", "deactivate", "gone"))
    added = show(home, "--action", "kmc.caller.add", "--outcome", "success")
    assert [r["object"] for r in added] == ["ca", "o1", "o2", "o3", "gone"]
    assert [r["object"] for r in show(home, "--action", "kmc.caller.deactivate",
                                      "--outcome", "success")] == ["gone"]

    # an escrowed key to recover (the CA escrows over HTTP; here through the library)
    audit = AuditLog.at_home(home)
    storage = ceremony.unseal_from_files(home, [
        (next((tmp_path / "shares").glob(f"share-*-{n}.json")),
         f"{n} passphrase 1".encode()) for n in ("li", "wang")], audit=audit)
    kmc = KeyManagementCentre.open(f"sqlite:///{home / 'kmc.db'}", storage, audit=audit)
    kmc.escrow(kmc.authenticate(keys["ca"].read_text().strip()), "11010519491231002X",
               SM2PrivateKey.generate().public_key().spki_der())
    kmc.close()
    audit.engine.dispose()

    pub = tmp_path / "newcard.der"
    pub.write_bytes(SM2PrivateKey.generate().public_key().spki_der())
    rid = json.loads(ok(run(home, "kmc", "recovery", "request", "--api-key-file",
                            str(keys["o1"]), "--owner", "11010519491231002X",
                            "--card-public-key", str(pub), "--reason", "card lost")))["request_id"]
    for officer in ("o2", "o3"):
        ok(run(home, "kmc", "recovery", "approve", rid, "--api-key-file", str(keys[officer])))
    ok(run(home, "kmc", "recovery", "complete", rid, "--api-key-file", str(keys["o1"]),
           "--out", str(tmp_path / "recovered.blob"), *shares("zhang", "wang")))
    done = [(r["actor"], r["action"]) for r in show(home, "--action", "kmc.recovery",
                                                    "--outcome", "success")]
    assert done == [("o1", "kmc.recovery.request"), ("o2", "kmc.recovery.approve"),
                    ("o3", "kmc.recovery.approve"), ("o1", "kmc.recovery.complete")]
    assert all(r["object"] == rid for r in show(home, "--action", "kmc.recovery.approve"))
    verified(home)


def test_ra_officer_changes_are_audited(tmp_path: Path) -> None:
    home = tmp_path / "home"
    password = _secret(tmp_path / "pw", "a long enough officer password 1")
    ok(run(home, "ra", "add-officer", "wang", "--role", "officer", "--person-id",
           "110101198001010033", "--password-file", str(password)))
    added = show(home, "--action", "ra.officer.add", "--outcome", "success")
    assert [r["object"] for r in added] == ["wang"]
    verified(home)


@pytest.mark.parametrize("bad", ["cert", "x.y"])
def test_audit_show_refuses_an_unknown_zone(tmp_path: Path, bad: str) -> None:
    home = tmp_path / "home"
    ok(run(home, "ca", "init"))
    result = run(home, "audit", "show", "--action", bad)
    assert result.exit_code == 2 and "actions start with one of ca, kmc, ra, gateway" in \
        result.output


def test_served_logs_make_signed_checkpoints_on_a_schedule(tmp_path: Path) -> None:
    """A service's audit log signs checkpoints by itself, on a timer, with the data
    directory's audit key (made on first use); 'audit verify --cert' checks them."""
    import time

    from sscard.audit.scheduled import CERT_FILE, PASS_FILE, open_served_log

    home = tmp_path / "home"
    home.mkdir()
    log = open_served_log(f"sqlite:///{home / 'audit.sqlite'}", home, interval=0.2)
    try:
        assert (home / PASS_FILE).stat().st_mode & 0o777 == 0o600
        log.append("ca-service", "ca.crl.issue", "ca:issuing", "success")
        deadline = time.monotonic() + 10
        while log.latest_checkpoint() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # nothing else is appended: only the timer can make it
        checkpoint = log.latest_checkpoint()
        assert checkpoint is not None and checkpoint.tree_size == 1
    finally:
        log.engine.dispose()
    out = ok(run(home, "audit", "verify", "--cert", str(home / CERT_FILE)))
    assert "1 checkpoints" in out and "intact" in out
    # the same key next time (a second worker, a restart)
    again = open_served_log(f"sqlite:///{home / 'audit.sqlite'}", home, interval=3600)
    try:
        assert again.signer is not None and log.signer is not None
        assert again.signer.public_key() == log.signer.public_key()
    finally:
        again.engine.dispose()


def test_ca_serve_workers_open_a_checkpointing_log(tmp_path: Path) -> None:
    from ca.serve_cli import _AppFactory

    home = tmp_path / "home"
    ok(run(home, "ca", "init"))
    app = _AppFactory(home, None, None, None, home / "ca" / "access.toml", False,
                      f"sqlite:///{home / 'audit.sqlite'}")()
    config = app.extensions["sscard_ca"].config
    try:
        assert config.audit_log.signer is not None and config.audit_log.checkpoint_interval
        assert config.authority.audit is config.audit_log  # the CA records in the same log
    finally:
        config.authority.close()
