"""Key ceremony: M-of-N custodian shares, restore with M-1 fails and with M succeeds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from keymgmt import ceremony, ceremony_log, shares
from keymgmt.errors import CeremonyError, ShareError, StorageKeyError
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey

CUSTODIANS = [ceremony.Custodian(f"custodian-{i}", f"passphrase-{i}-{i}".encode())
              for i in range(1, 6)]


def _files(result: ceremony.CeremonyResult, names: list[str]) -> list[tuple[Path, bytes]]:
    pw = {c.name: c.passphrase for c in CUSTODIANS}
    return [(result.share_files[n], pw[n]) for n in names]


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ceremony.CeremonyResult]:
    home = tmp_path_factory.mktemp("home")
    result = ceremony.run_ceremony(
        home, CUSTODIANS, 3, home / "shares",
        root_ca=ceremony.RootCaKeyRequest("sm2", b"root ca passphrase"),
        audit=AuditLog.at_home(home))
    return home, result


def test_m_minus_one_shares_fail_and_m_succeed(done: tuple[Path, ceremony.CeremonyResult]) -> None:
    home, result = done
    names = [c.name for c in CUSTODIANS]
    with pytest.raises(ShareError, match=r"2 custodian share.*3 of 5 are needed"):
        ceremony.unseal_from_files(home, _files(result, names[:2]), audit=AuditLog.at_home(home))
    a = ceremony.unseal_from_files(home, _files(result, names[:3]), audit=AuditLog.at_home(home))
    b = ceremony.unseal_from_files(home, _files(result, [names[4], names[1], names[3]]),
                                   audit=AuditLog.at_home(home))
    # the same storage key from two different subsets: what one wraps the other unwraps
    wrapped = a.wrap(b"archive record", b"aad")
    assert b.unwrap(wrapped, b"aad") == b"archive record"
    assert a.key_id == b.key_id == result.storage_key_id
    with pytest.raises(StorageKeyError, match="does not unwrap"):
        b.unwrap(wrapped, b"other aad")


def test_share_files_need_their_own_passphrase(done: tuple[Path, ceremony.CeremonyResult]) -> None:
    _home, result = done
    path = result.share_files["custodian-1"]
    assert os.stat(path).st_mode & 0o077 == 0
    with pytest.raises(ShareError, match="wrong passphrase for custodian 'custodian-1'"):
        shares.read_share_file(path, b"passphrase-2-2")
    # the share value is nowhere in clear in the file
    share = shares.read_share_file(path, b"passphrase-1-1")
    assert share.value not in path.read_bytes()
    assert share.value.hex() not in path.read_text()
    assert share.value.hex() not in repr(share)


def test_same_share_twice_is_not_two_custodians(done: tuple[Path, ceremony.CeremonyResult]) -> None:
    home, result = done
    files = _files(result, ["custodian-1", "custodian-2"])
    with pytest.raises(ShareError, match="same custodian share was given twice"):
        ceremony.unseal_from_files(home, [*files, files[0]], audit=AuditLog.at_home(home))


def test_altered_share_is_detected(done: tuple[Path, ceremony.CeremonyResult],
                                   tmp_path: Path) -> None:
    home, result = done
    # a custodian who edits the threshold in the file: the AAD no longer matches
    doc = json.loads(result.share_files["custodian-1"].read_text())
    doc["threshold"] = 2
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    with pytest.raises(ShareError, match=r"wrong passphrase .* or the file was altered"):
        shares.read_share_file(forged, b"passphrase-1-1")
    # a share from a different ceremony with the right threshold is refused by id
    other_home = tmp_path / "other"
    other = ceremony.run_ceremony(other_home, CUSTODIANS, 3, other_home / "shares",
                                  audit=AuditLog.at_home(other_home))
    mixed = [*_files(result, ["custodian-1", "custodian-2"]), *_files(other, ["custodian-3"])]
    with pytest.raises(ShareError, match=r"another ceremony|different ceremonies"):
        ceremony.unseal_from_files(home, mixed, audit=AuditLog.at_home(home))


def test_forged_share_value_fails_the_sealed_key_check(
    done: tuple[Path, ceremony.CeremonyResult],
) -> None:
    home, result = done
    real = [shares.read_share_file(p, pw)
            for p, pw in _files(result, ["custodian-1", "custodian-2", "custodian-3"])]
    bad = shares.Share(real[2].ceremony_id, real[2].custodian, real[2].index,
                       real[2].threshold, real[2].total, bytes(32))
    with pytest.raises(ShareError, match="do not open the sealed storage key"):
        ceremony.unseal(home, [real[0], real[1], bad], audit=AuditLog.at_home(home))


def test_ceremony_log_records_every_step_and_is_chained(
    done: tuple[Path, ceremony.CeremonyResult],
) -> None:
    home, _result = done
    log = ceremony.log_path(home)
    events = [e["event"] for e in ceremony_log.read(log)]
    assert events[0] == "ceremony.start"
    assert events.count("ceremony.share_written") == 5
    assert "ceremony.storage_key_generated" in events
    assert "ceremony.root_ca_key_generated" in events
    assert "ceremony.end" in events
    assert "unseal.refused" in events and "unseal.ok" in events
    assert ceremony_log.verify(log) == len(events)
    lines = log.read_text().splitlines()
    tampered = home / "tampered.log"
    tampered.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    with pytest.raises(CeremonyError, match="chain broken at line 2"):
        ceremony_log.verify(tampered)


def test_root_ca_key_is_usable_by_the_ca(done: tuple[Path, ceremony.CeremonyResult]) -> None:
    _home, result = done
    assert result.root_ca_key is not None
    key = SoftwareKey.load(result.root_ca_key, b"root ca passphrase")
    assert key.algorithm.value == "sm2"
    assert result.root_ca_public_key is not None
    assert key.public_key().spki_pem() == result.root_ca_public_key.read_bytes()
    key.public_key().verify(key.sign(b"tbs"), b"tbs")


def test_ceremony_refuses_bad_parameters_and_a_second_run(
    done: tuple[Path, ceremony.CeremonyResult], tmp_path: Path,
) -> None:
    home, _ = done
    with pytest.raises(CeremonyError, match="already ran"):
        ceremony.run_ceremony(home, CUSTODIANS, 3, tmp_path / "s", audit=AuditLog.at_home(home))
    with pytest.raises(ShareError, match="threshold"):
        ceremony.run_ceremony(tmp_path / "h1", CUSTODIANS, 6, tmp_path / "s1",
                              audit=AuditLog.at_home(tmp_path / "h1"))
    with pytest.raises(ShareError, match="threshold"):
        ceremony.run_ceremony(tmp_path / "h2", CUSTODIANS, 1, tmp_path / "s2",
                              audit=AuditLog.at_home(tmp_path / "h2"))
    same_pw = [ceremony.Custodian("a", b"samesame1"), ceremony.Custodian("b", b"samesame1")]
    with pytest.raises(CeremonyError, match="different passphrase"):
        ceremony.run_ceremony(tmp_path / "h3", same_pw, 2, tmp_path / "s3",
                              audit=AuditLog.at_home(tmp_path / "h3"))
    with pytest.raises(CeremonyError, match="no ceremony state"):
        ceremony.unseal(tmp_path / "nowhere", [], audit=AuditLog.at_home(tmp_path / "nowhere"))


def test_refused_ceremony_leaves_nothing_behind(tmp_path: Path) -> None:
    audit = AuditLog.at_home(tmp_path / "audit")
    with pytest.raises(ShareError, match="threshold"):
        ceremony.run_ceremony(tmp_path / "h", CUSTODIANS, 9, tmp_path / "s", audit=audit)
    assert not (tmp_path / "h").exists() and not (tmp_path / "s").exists()
    # the refusal is in the audit log, with its reason
    assert [(r.record.action, r.record.outcome) for r in audit.records()] == [
        ("kmc.ceremony.run", "attempt"), ("kmc.ceremony.run", "denied")]
    assert "threshold" in audit.get(2).record.details["reason"]


def test_failed_ceremony_removes_its_shares_and_logs_why(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with pytest.raises(Exception, match="unknown key algorithm"):
        ceremony.run_ceremony(home, CUSTODIANS[:3], 2, tmp_path / "s",
                              root_ca=ceremony.RootCaKeyRequest("dsa", b"root passphrase"),
                              audit=AuditLog.at_home(home))
    assert list((tmp_path / "s").iterdir()) == []
    assert not ceremony.state_path(home).exists()
    events = ceremony_log.read(ceremony.log_path(home))
    assert events[-1]["event"] == "ceremony.failed"
    assert "unknown key algorithm" in events[-1]["details"]["reason"]
    # the directory is usable for a proper ceremony afterwards
    ceremony.run_ceremony(home, CUSTODIANS[:3], 2, tmp_path / "s", audit=AuditLog.at_home(home))
