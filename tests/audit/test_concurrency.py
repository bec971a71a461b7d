"""Concurrent writers in separate processes never fork the chain: four processes append at once
(each with its own engine, as four service workers would) and the result is one intact chain."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from collections import defaultdict

import pytest
from sqlalchemy import Engine

from sscard.audit.log import AuditLog, make_engine
from sscard.audit.verify import verify_log
from sscard.keys.software import SoftwareKey

WORKERS = 4
EACH = 40


def _worker(url: str, worker: int, key_pem: bytes,
            ready: multiprocessing.synchronize.Barrier) -> None:
    key = SoftwareKey.from_bytes(key_pem, b"audit-test")
    engine = make_engine(url)
    log = AuditLog(engine, signer=key, checkpoint_every=7)
    ready.wait(30)  # all writers start appending together
    for i in range(EACH):
        log.append(f"worker:{worker}", "test.append", f"item:{i}", "success", f"w{worker}-{i}",
                   {"worker": worker, "i": i})
    engine.dispose()


@pytest.mark.timeout(120)
def test_four_processes_append_one_chain(db_url: str, engine: Engine,
                                         audit_key: SoftwareKey) -> None:
    AuditLog(engine, signer=audit_key)  # create the tables once, as a service's migration would
    engine.dispose()
    key_pem = audit_key.private_key.encrypted_pkcs8(b"audit-test")
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(WORKERS)
    procs = [ctx.Process(target=_worker, args=(db_url, w, key_pem, ready))
             for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    log = AuditLog(engine)
    records = list(log.records())
    assert [r.seq for r in records] == list(range(1, WORKERS * EACH + 1))
    per_worker: dict[int, list[int]] = defaultdict(list)
    for r in records:
        per_worker[r.record.details["worker"]].append(r.record.details["i"])
    # every append landed exactly once, and each writer's own order is kept
    assert dict(per_worker) == {w: list(range(EACH)) for w in range(WORKERS)}
    # (the barrier makes the writers contend from the first append; SQLite's busy handler is
    # not fair, so how they interleave varies and is not asserted)
    times = [r.record.time for r in records]
    assert times == sorted(times)
    cps = log.checkpoints()
    assert [cp.index for cp in cps] == list(range(1, len(cps) + 1))
    assert len(cps) >= (WORKERS * EACH) // 7 // 2
    report = verify_log(engine, public_key=audit_key.public_key())
    assert report.intact, report.findings


THREADS = 4


def _group_worker(url: str, worker: int, key_pem: bytes,
                  ready: multiprocessing.synchronize.Barrier) -> None:
    import threading

    key = SoftwareKey.from_bytes(key_pem, b"audit-test")
    engine = make_engine(url)
    log = AuditLog(engine, signer=key, checkpoint_every=7)
    log.enable_group_commit()
    ready.wait(30)

    def appends(thread: int) -> None:
        for i in range(EACH):
            log.append(f"worker:{worker}", "test.append", f"item:{i}", "success",
                       f"w{worker}-{thread}-{i}", {"worker": worker, "thread": thread, "i": i})

    threads = [threading.Thread(target=appends, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()


@pytest.mark.timeout(120)
def test_group_commit_from_two_processes_of_four_threads_one_chain(
        db_url: str, engine: Engine, audit_key: SoftwareKey) -> None:
    """Appends through each process's group commit (many threads' records in one transaction)
    from two processes at once: every record exactly once, one intact chain, checkpoints."""
    AuditLog(engine, signer=audit_key)
    engine.dispose()
    key_pem = audit_key.private_key.encrypted_pkcs8(b"audit-test")
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(2)
    procs = [ctx.Process(target=_group_worker, args=(db_url, w, key_pem, ready))
             for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0, 0]
    log = AuditLog(engine)
    records = list(log.records())
    assert [r.seq for r in records] == list(range(1, 2 * THREADS * EACH + 1))
    per_thread: dict[tuple[int, int], list[int]] = defaultdict(list)
    for r in records:
        d = r.record.details
        per_thread[(d["worker"], d["thread"])].append(d["i"])
    assert dict(per_thread) == {(w, t): list(range(EACH)) for w in range(2)
                                for t in range(THREADS)}
    assert log.checkpoints()
    report = verify_log(engine, public_key=audit_key.public_key())
    assert report.intact, report.findings
