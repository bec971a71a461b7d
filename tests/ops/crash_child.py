"""The process the crash test kills: ``python -m tests.ops.crash_child MODE HOME TOTAL``.

``issue``: issue certificates for subjects 0..TOTAL-1 through the CA's batch path, skipping the
subjects the database already holds (that is the resume after a crash), and append each
certificate it is handed to ``HOME/handed.log`` (serial, subject index, SHA-256 of the DER) once
``issue_batch`` returned, i.e. after the commit. ``crl``: revoke one good certificate and build a
full or delta CRL, in a loop, appending each revocation and each CRL handed out the same way.
Prints ``ready`` once the CA is open, so the parent kills it during the work itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import sys
from pathlib import Path

from sqlalchemy import select

from ca.authority import CertificateAuthority, IssueRequest
from ca.storage import CertificateRecord
from sscard.audit import AuditLog
from sscard.card.validation import synthetic_ssn
from sscard.crypto.asymmetric import PublicKey

CHUNK = 10


def subject(i: int) -> str:
    return f"CN=持卡人{i},serialNumber={synthetic_ssn(i, born=dt.date(1970, 1, 1))},C=CN"


def index_of(subject_text: str) -> int | None:
    """The i of subject(i), from its CN (the serialNumber carries a check digit)."""
    for part in subject_text.split(","):
        key, _, value = part.partition("=")
        if key.strip() in ("CN", "common_name", "Common Name") and \
                value.strip().startswith("持卡人"):
            return int(value.strip().removeprefix("持卡人"))
    return None


def hand_out(home: Path, line: str) -> None:
    with (home / "handed.log").open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def issued_indices(ca: CertificateAuthority) -> set[int | None]:
    """The subjects the database already holds (it stores them as formatted text)."""
    with ca.engine.connect() as conn:
        return {index_of(s) for s in conn.execute(select(CertificateRecord.subject).where(
            CertificateRecord.profile == "cardholder-sign")).scalars()}


def issue(ca: CertificateAuthority, home: Path, total: int, key: PublicKey) -> None:
    done = issued_indices(ca)
    todo = [i for i in range(total) if i not in done]
    print("ready", len(todo), flush=True)
    for start in range(0, len(todo), CHUNK):
        batch = todo[start:start + CHUNK]
        issued = ca.issue_batch([IssueRequest(public_key=key, subject=subject(i))
                                 for i in batch], "cardholder-sign", chunk_size=CHUNK)
        for i, cert in zip(batch, issued, strict=True):
            hand_out(home, f"cert {cert.serial_hex} {i} {hashlib.sha256(cert.der).hexdigest()}")
    print("complete", flush=True)


def crls(ca: CertificateAuthority, home: Path, rounds: int) -> None:
    print("ready", flush=True)
    rng = random.Random()
    for n in range(rounds):
        good = [s for s, _p, _subj in ca.list_certificates(limit=100000)
                if s.status.value == "good" and _p == "cardholder-sign"]
        if good:
            target = rng.choice(good).serial
            ca.revoke(target, "keyCompromise")
            hand_out(home, f"revoked {target:X}")
        der = ca.build_crl_der(delta=bool(n % 2) and ca.latest_crl_der() is not None)
        hand_out(home, f"crl {hashlib.sha256(der).hexdigest()}")
    print("complete", flush=True)


def main() -> None:
    mode, home_arg, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    home = Path(home_arg)
    key = PublicKey.from_spki((home / "holder.spki").read_bytes())
    with CertificateAuthority.open(home, audit=AuditLog.at_home(home)) as ca:
        if mode == "issue":
            issue(ca, home, count, key)
        else:
            crls(ca, home, count)


if __name__ == "__main__":
    main()
