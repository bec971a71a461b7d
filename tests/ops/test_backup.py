"""Backup and restore of a whole data directory, through the ``sscard admin`` commands.

The restored directory is checked with the owners' own code: the CA opened with
``ca.authority`` (same certificates, statuses and CRL, and it still issues), the KMC unsealed
with the custodians' shares (an escrowed key recovered under dual control matches the escrow),
the audit log verified against its certificate.
"""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ca.authority import CertificateAuthority
from keymgmt import pkcs12
from keymgmt.service import OfficerRecipient, Role
from sscard.audit.log import AuditLog, make_engine
from sscard.audit.log import default_url as audit_url
from sscard.audit.verify import verify_log
from sscard.backup import archive
from sscard.backup.errors import BackupFormatError, BackupIntegrityError, WrongBackupPassphrase
from sscard.cli import cli
from sscard.crypto.asymmetric import PrivateKey, PublicKey
from sscard.keys.software import SoftwareKey
from sscard.x509.parse import load_certificate
from tests.ops.conftest import Populated, holder, populate, principals, unseal
from tests.pg import PostgresCluster


def sscard(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def backup(home: Path, out: Path, pf: Path) -> Result:
    result = sscard("--home", home, "admin", "backup", "--out", out, "--passphrase-file", pf)
    assert result.exit_code == 0, result.output
    return result


def ca_state(home: Path) -> tuple[dict[int, tuple[str, bytes | None]], bytes | None]:
    with CertificateAuthority.open(home, audit=AuditLog.at_home(home)) as ca:
        rows = ca.list_certificates(limit=100000)
        state = {s.serial: (s.status.value, s.certificate_der) for s, _p, _s in rows}
        return state, ca.latest_crl_der()


def test_backup_restore_into_a_fresh_directory(populated: Populated, passphrase_file: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "site.backup"
    result = backup(populated.home, out, passphrase_file)
    assert "3 SQLite database(s)" in result.output  # ca.db, kmc.db, audit.sqlite
    before, crl_before = ca_state(populated.home)
    assert {s: v[0] for s, v in before.items()} == {
        s: st for s, st in populated.statuses.items()} | {
        s: "good" for s in before if s not in populated.statuses}

    verified = sscard("admin", "verify-backup", out, "--passphrase-file", passphrase_file)
    assert verified.exit_code == 0, verified.output
    assert "is intact" in verified.output

    # the first site is lost: only the backup and the custodians' shares remain
    shutil.rmtree(populated.home)
    target = tmp_path / "restored"
    restored = sscard("admin", "restore", out, "--home", target,
                      "--passphrase-file", passphrase_file)
    assert restored.exit_code == 0, restored.output
    assert (target / "secrets" / "ca.pass").stat().st_mode & 0o077 == 0

    after, crl_after = ca_state(target)
    assert after == before and crl_after == crl_before
    for serial, status in populated.statuses.items():
        assert after[serial][0] == status
    # the restored CA keys still sign
    with CertificateAuthority.open(target, audit=AuditLog.at_home(target)) as ca:
        issued = ca.issue_for_public_key(SoftwareKey.generate("sm2").public_key(), holder(99),
                                         "cardholder-sign")
        assert ca.status(issued.serial).status.value == "good"
        assert load_certificate(issued.der).serial_number == issued.serial

    kmc = unseal(target, populated.share_dir)
    try:
        who = principals(kmc, {"o1": Role.OFFICER, "o2": Role.OFFICER, "o3": Role.OFFICER})
        req = kmc.request_recovery(who["o1"], recipient=OfficerRecipient("o1"),
                                   reason="restore drill", key_id=populated.escrow_key_id)
        kmc.approve(who["o2"], req["request_id"])
        kmc.approve(who["o3"], req["request_id"])
        got = kmc.complete_recovery(who["o1"], req["request_id"])
    finally:
        kmc.close()
    assert got.pkcs12 is not None and got.pkcs12_passphrase is not None
    p8, _cert = pkcs12.open_pfx(got.pkcs12, got.pkcs12_passphrase.encode())
    assert PrivateKey.from_pkcs8(p8).public_key().spki_der() == populated.escrow_spki

    engine = make_engine(audit_url(target))
    try:
        load = load_certificate(populated.audit_cert)
        anchor = PublicKey.from_spki(load["tbs_certificate"]["subject_public_key_info"].dump())
        report = verify_log(engine, public_key=anchor)
    finally:
        engine.dispose()
    assert report.intact, report.findings
    # every record of the backup, and those of the recovery just done on the restored copy
    assert report.records > populated.audit_records and report.checkpoints >= 1


def test_backup_while_services_write_is_consistent(tmp_path: Path, passphrase_file: Path) -> None:
    """Writers keep appending to the audit log and issuing during the backup; every database
    in it is a consistent snapshot: the restored audit chain verifies, the CA rows all parse."""
    pop = populate(tmp_path / "home", tmp_path / "shares", certificates=2)
    stop = threading.Event()
    errors: list[BaseException] = []

    def audit_writer() -> None:
        log = AuditLog.open(audit_url(pop.home))
        try:
            while not stop.is_set():
                log.append("ra", "request.approve", "req", "success")
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            log.engine.dispose()

    def issuer() -> None:
        try:
            with CertificateAuthority.open(pop.home, audit=AuditLog.at_home(pop.home)) as ca:
                key = SoftwareKey.generate("sm2").public_key()
                i = 100
                while not stop.is_set():
                    ca.issue_for_public_key(key, holder(i), "cardholder-sign")
                    i += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=audit_writer), threading.Thread(target=issuer)]
    for t in threads:
        t.start()
    try:
        out = tmp_path / "live.backup"
        backup(pop.home, out, passphrase_file)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    target = tmp_path / "restored"
    assert sscard("admin", "restore", out, "--home", target, "--passphrase-file",
                  passphrase_file).exit_code == 0
    engine = make_engine(audit_url(target))
    try:
        report = verify_log(engine)
    finally:
        engine.dispose()
    assert report.intact, report.findings
    assert report.records >= pop.audit_records
    state, _crl = ca_state(target)
    assert len(state) >= 2
    for serial, (_status, der) in state.items():
        assert der is not None and load_certificate(der).serial_number == serial


@pytest.fixture
def made_backup(populated: Populated, passphrase_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "site.backup"
    backup(populated.home, out, passphrase_file)
    return out


def _verify(path: Path, pf: Path) -> Result:
    return sscard("admin", "verify-backup", path, "--passphrase-file", pf)


def test_tampered_or_truncated_backups_are_refused(made_backup: Path, passphrase_file: Path,
                                                   tmp_path: Path) -> None:
    data = made_backup.read_bytes()
    cases = {
        "flipped byte in the body": data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 1])
        + data[len(data) // 2 + 1:],
        "tail truncated": data[:-100],
        "last chunk dropped": data[:len(data) - 5],
        "garbage appended": data + b"\x00\x00\x00\x20" + b"x" * 32,
    }
    for what, blob in cases.items():
        bad = tmp_path / "bad.backup"
        bad.write_bytes(blob)
        result = _verify(bad, passphrase_file)
        assert result.exit_code == 1, (what, result.output)
        assert "damaged or altered" in result.output, what
        target = tmp_path / "never"
        restored = sscard("admin", "restore", bad, "--home", target, "--passphrase-file",
                          passphrase_file)
        assert restored.exit_code == 1 and "nothing restored" in restored.output, what
        assert not target.exists(), what
        assert not list(tmp_path.glob(".never.restoring-*")), what


def test_wrong_passphrase_and_foreign_files_cannot_be_checked(
        made_backup: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)  # a secret file: owner only
    result = _verify(made_backup, wrong)
    assert result.exit_code == 2 and "passphrase does not open this backup" in result.output
    foreign = tmp_path / "foreign.tar"
    foreign.write_bytes(b"PK\x03\x04 not a backup at all")
    result = _verify(foreign, wrong)
    assert result.exit_code == 2 and "not an sscard backup" in result.output
    result = _verify(tmp_path / "absent.backup", wrong)
    assert result.exit_code == 2 and "cannot read backup" in result.output


def test_restore_refuses_a_non_empty_target_and_backup_refuses_overwrite(
        populated: Populated, made_backup: Path, passphrase_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "ca.toml").write_text("# someone else's data\n")
    result = sscard("admin", "restore", made_backup, "--home", target, "--passphrase-file",
                    passphrase_file)
    assert result.exit_code == 2 and "is not empty" in result.output
    assert (target / "ca.toml").read_text() == "# someone else's data\n"
    assert sorted(p.name for p in target.iterdir()) == ["ca.toml"]
    empty = tmp_path / "empty"
    empty.mkdir()
    ok = sscard("admin", "restore", made_backup, "--home", empty, "--passphrase-file",
                passphrase_file)
    assert ok.exit_code == 0, ok.output
    again = sscard("--home", populated.home, "admin", "backup", "--out", made_backup,
                   "--passphrase-file", passphrase_file)
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    inside = sscard("--home", populated.home, "admin", "backup", "--out",
                    populated.home / "x.backup", "--passphrase-file", passphrase_file)
    assert inside.exit_code == 1 and "outside the data directory" in inside.output


def _seal(plain: bytes, chunk: int = 64) -> bytes:
    out = io.BytesIO()
    archive.encrypt_stream(io.BytesIO(plain), out, b"pw", scrypt_n=1 << 10, chunk_size=chunk)
    return out.getvalue()


def _open(blob: bytes, pw: bytes = b"pw") -> bytes:
    out = io.BytesIO()
    archive.decrypt_stream(io.BytesIO(blob), out, pw)
    return out.getvalue()


def _chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    src = io.BytesIO(blob)
    archive.read_header(src)
    head = blob[:src.tell()]
    chunks: list[bytes] = []
    while True:
        n = src.read(4)
        if not n:
            return head, chunks
        chunks.append(n + src.read(int.from_bytes(n, "big")))


def test_container_detects_reordered_dropped_and_replayed_chunks() -> None:
    plain = bytes(range(256)) * 3
    blob = _seal(plain)
    assert _open(blob) == plain
    assert _open(_seal(b"")) == b""
    head, chunks = _chunks(blob)
    assert len(chunks) == 12
    for what, body in {
        "swapped": [chunks[1], chunks[0], *chunks[2:]],
        "middle dropped": chunks[:5] + chunks[6:],
        "final dropped": chunks[:-1],
        "chunk replayed": [*chunks[:3], chunks[2], *chunks[3:]],
    }.items():
        try:
            _open(head + b"".join(body))
        except BackupIntegrityError:
            continue
        pytest.fail(f"{what}: the altered container was accepted")
    _other_head, other_chunks = _chunks(_seal(plain))
    with pytest.raises((BackupIntegrityError, WrongBackupPassphrase)):
        _open(head + b"".join(other_chunks))  # body of another backup under the same passphrase
    with pytest.raises(WrongBackupPassphrase):
        _open(blob, b"other")
    altered = head.replace(b'"r": 8', b'"r": 9')
    with pytest.raises(WrongBackupPassphrase, match="header was altered"):
        _open(altered + b"".join(chunks))
    header = head[len(archive.MAGIC) + 4:].replace(b'"n": 1024', b'"n": 1073741824')
    huge = archive.MAGIC + len(header).to_bytes(4, "big") + header
    with pytest.raises(BackupFormatError, match="out of bounds"):
        _open(huge + b"".join(chunks))


def test_postgresql_database_named_in_config_is_dumped_and_restored(
        pg_cluster: PostgresCluster, tmp_path: Path, passphrase_file: Path) -> None:
    source_url = pg_cluster.create_database("bk_src")
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "ca-config.toml"
    config.write_text(f"""\
base_url = "http://127.0.0.1:8080"

[database]
url = "{source_url}"

[root]
name = "root"
subject = "CN=根CA,O=某省人力资源和社会保障厅,C=CN"
algorithm = "sm2"
validity_days = 3650

[[issuing]]
name = "issuing"
subject = "CN=签发CA,O=某省人力资源和社会保障厅,C=CN"
algorithm = "sm2"
validity_days = 1825
path_length = 0
""")
    with CertificateAuthority.init(home, config, audit=AuditLog.at_home(home)) as ca:
        serials = [ca.issue_for_public_key(SoftwareKey.generate("sm2").public_key(), holder(i),
                                           "cardholder-sign").serial for i in range(3)]
        ca.revoke(serials[0], "cessationOfOperation")
    before, crl_before = ca_state(home)
    out = tmp_path / "pg.backup"
    result = backup(home, out, passphrase_file)
    assert "1 PostgreSQL database(s)" in result.output
    verified = _verify(out, passphrase_file)
    assert verified.exit_code == 0 and "ca.toml:database.url" in verified.output

    target = tmp_path / "restored"
    missing = sscard("admin", "restore", out, "--home", target, "--passphrase-file",
                     passphrase_file)
    assert missing.exit_code == 2 and "--database LABEL=URL: ca.toml:database.url" in \
        missing.output
    assert not target.exists()
    busy = sscard("admin", "restore", out, "--home", target, "--passphrase-file",
                  passphrase_file, "--database", f"ca.toml:database.url={source_url}")
    assert busy.exit_code == 2 and "is not empty" in busy.output
    assert not target.exists()

    new_url = pg_cluster.create_database("bk_dst")
    ok = sscard("admin", "restore", out, "--home", target, "--passphrase-file", passphrase_file,
                "--database", f"ca.toml:database.url={new_url}")
    assert ok.exit_code == 0, ok.output
    assert new_url in (target / "ca.toml").read_text()
    pg_cluster.drop_database(source_url)  # the old site's database is gone
    after, crl_after = ca_state(target)
    assert after == before and crl_after == crl_before
    assert after[serials[0]][0] == "revoked"
    pg_cluster.drop_database(new_url)
