"""Crash consistency of the CA: SIGKILL at random points during batch issuance and during
revocation + CRL generation, then restart and resume.

The child (tests/ops/crash_child.py) writes every certificate, revocation and CRL it is handed to
an append-only file after the call returned. After every kill the database must hold each of
them (no certificate handed out without its row, no revocation or CRL lost), no serial twice,
no subject issued twice, and a pass of the database integrity check; the batch then resumes
where the database says it stopped and finishes.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ca.authority import CertificateAuthority
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey
from tests.ops.crash_child import index_of

ROOT = Path(__file__).resolve().parents[2]
ISSUE_KILLS = 36
CRL_KILLS = 16


def start(mode: str, home: Path, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.ops.crash_child", mode, str(home),
                             str(count)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_during_work(proc: subprocess.Popen[str], rng: random.Random, longest: float) -> bool:
    """Wait for 'ready', let it work for a random time, SIGKILL it. False if it finished."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.wait(timeout=60)
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"child did not start: {line!r} {err}")
    time.sleep(rng.uniform(0.0, longest))
    finished = proc.poll() is not None
    if not finished:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    if finished and proc.returncode != 0:
        raise AssertionError(f"child failed: {proc.stderr.read() if proc.stderr else ''}")
    return not finished


def handed(home: Path) -> list[list[str]]:
    path = home / "handed.log"
    if not path.exists():
        return []
    # a kill can cut the last line short: the hand-out itself was then not finished
    return [line.split() for line in path.read_text().splitlines(keepends=True)
            if line.endswith("\n")]


def db_rows(home: Path) -> list[tuple[str, str, bytes, str]]:
    conn = sqlite3.connect(home / "ca.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return conn.execute("SELECT serial, subject, der, status FROM certificates WHERE "
                            "profile = 'cardholder-sign'").fetchall()
    finally:
        conn.close()


def check_invariants(home: Path) -> dict[str, tuple[str, bytes, str]]:
    rows = db_rows(home)
    serials = [r[0] for r in rows]
    assert len(serials) == len(set(serials)), "a serial number appears twice"
    subjects = [r[1] for r in rows]
    assert len(subjects) == len(set(subjects)), "a subject was issued twice (resume re-issued)"
    by_serial = {r[0]: (r[1], r[2], r[3]) for r in rows}
    for entry in handed(home):
        if entry[0] == "cert":
            serial, index, digest = entry[1], int(entry[2]), entry[3]
            assert serial in by_serial, f"certificate {serial} was handed out without its row"
            subject, der, _status = by_serial[serial]
            assert index_of(subject) == index and hashlib.sha256(der).hexdigest() == digest
        elif entry[0] == "revoked":
            assert by_serial[entry[1]][2] == "revoked", f"revocation of {entry[1]} was lost"
    return by_serial


def test_sigkill_during_batch_issuance_and_crl_generation(tmp_path: Path) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 32)
    rng.seed(seed)
    home = tmp_path / "ca-home"
    CertificateAuthority.init(home, audit=AuditLog.at_home(home)).close()
    (home / "holder.spki").write_bytes(SoftwareKey.generate("sm2").public_key().spki_der())

    # Kills must land during the work whatever the machine's speed: when a child finishes its
    # batch before the kill, the next batch is larger (as the next day's issuance would be).
    total = 1000
    kills = starts = 0
    while kills < ISSUE_KILLS:
        starts += 1
        assert starts < ISSUE_KILLS * 3, f"seed {seed}: children keep finishing before the kill"
        landed = kill_during_work(start("issue", home, total), rng, 0.25)
        kills += landed
        check_invariants(home)
        if not landed:
            total += 1000
    issued_before_resume = len(db_rows(home))
    assert 0 < issued_before_resume <= total

    final = start("issue", home, total)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0 and "complete" in out, err
    rows = check_invariants(home)
    indices = [index_of(s) for s, _d, _st in rows.values()]
    assert sorted(i for i in indices if i is not None) == list(range(total))
    assert None not in indices
    handed_serials = [e[1] for e in handed(home) if e[0] == "cert"]
    assert len(handed_serials) == len(set(handed_serials))

    crl_kills = crl_starts = 0
    while crl_kills < CRL_KILLS:
        crl_starts += 1
        assert crl_starts < CRL_KILLS * 3, f"seed {seed}: CRL children keep finishing first"
        crl_kills += kill_during_work(start("crl", home, 200), rng, 0.8)
        check_invariants(home)
        conn = sqlite3.connect(home / "ca.db")
        try:
            numbers = [n for (n,) in conn.execute("SELECT number FROM crls ORDER BY number")]
            ders = {hashlib.sha256(d).hexdigest() for (d,) in conn.execute("SELECT der FROM crls")}
        finally:
            conn.close()
        assert len(numbers) == len(set(numbers)), "a CRL number was used twice"
        for entry in handed(home):
            if entry[0] == "crl":
                assert entry[1] in ders, "a CRL handed out is not recorded"
    kills += crl_kills
    assert kills >= 50, f"seed {seed}: only {kills} kills landed during work"

    # restart: the CA still works on top of it all
    with CertificateAuthority.open(home, audit=AuditLog.at_home(home)) as ca:
        crl = ca.build_crl()
        listed = {format(r["user_certificate"].native, "X")
                  for r in crl["tbs_cert_list"]["revoked_certificates"]}
    revoked = {s for s, (_subj, _der, st) in check_invariants(home).items() if st == "revoked"}
    assert revoked and {s.lstrip("0") for s in revoked} <= {s.lstrip("0") for s in listed}
