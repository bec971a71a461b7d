"""Audit-log append and verify rates beside raw SQLite, measured in the same run.

    python bench/audit.py [--seconds N] [--rounds N]

- append: ``AuditLog.append`` (schema check, lock, chain hash, Merkle frontier, one transaction
  per record, checkpoints every 1000 records signed with SM2) against raw ``sqlite3`` inserts of
  the same row, also one transaction per record, into a file in the same directory with the
  same journal settings (WAL, synchronous=FULL): what the audit machinery costs over the
  database's own commit.
- verify: records per second through ``verify_log`` (chain, tree, checkpoint signatures) against
  a raw ``SELECT`` of the same rows.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import figure, rate
from sscard.audit.log import AuditLog, make_engine
from sscard.audit.verify import verify_log
from sscard.keys.software import SoftwareKey

DETAILS = {"profile": "card-sign", "serial": "7f3a9c21d0e4b6a8"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="ours and the reference alternate; best of each kept")
    args = parser.parse_args()
    key = SoftwareKey.generate("sm2")
    with tempfile.TemporaryDirectory(prefix="sscard-bench-audit-") as tmp:
        log = AuditLog(make_engine(f"sqlite:///{Path(tmp) / 'audit.sqlite'}"), signer=key,
                       checkpoint_every=1000)
        raw = sqlite3.connect(Path(tmp) / "raw.sqlite")
        raw.execute("PRAGMA journal_mode=WAL")  # the same settings as the audit log's engine
        raw.execute("PRAGMA synchronous=FULL")
        raw.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, time TEXT, actor TEXT, action TEXT,"
                    " object TEXT, outcome TEXT, request_id TEXT, details TEXT, prev BLOB, "
                    "hash BLOB)")
        n = [0, 0]

        def ours() -> None:
            n[0] += 1
            log.append("ca:issuing-1", "cert.issue", f"serial:{n[0]:x}", "success",
                       f"req-{n[0]}", DETAILS)

        def reference() -> None:
            n[1] += 1
            raw.execute("INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (n[1], "2026-11-28T10:00:00.000000Z", "ca:issuing-1", "cert.issue",
                         f"serial:{n[1]:x}", "success", f"req-{n[1]}",
                         '{"profile":"card-sign","serial":"7f3a9c21d0e4b6a8"}',
                         b"\0" * 32, b"\1" * 32))
            raw.commit()

        best_ours = best_ref = 0.0
        for _ in range(args.rounds):
            best_ours = max(best_ours, rate(ours, args.seconds))
            best_ref = max(best_ref, rate(reference, args.seconds))
        print(figure("audit append, one transaction each (SQLite)", best_ours, best_ref))

        public = key.public_key()
        best_ours = best_ref = 0.0
        records = log.size()
        for _ in range(args.rounds):
            start = time.perf_counter()
            report = verify_log(log.engine, public_key=public)
            best_ours = max(best_ours, records / (time.perf_counter() - start))
            if not report.intact:
                raise SystemExit(f"benchmark log does not verify: {report.findings[:3]}")
            start = time.perf_counter()
            rows = raw.execute("SELECT * FROM t ORDER BY seq").fetchall()
            best_ref = max(best_ref, len(rows) / (time.perf_counter() - start))
        print(figure(f"audit verify of {records} records (SQLite)", best_ours, best_ref))
        raw.close()
        log.engine.dispose()


if __name__ == "__main__":
    main()
