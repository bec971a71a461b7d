"""Group commit: many threads' writes to one database in one transaction, one commit (fsync).

A service worker with several request threads spends most of a write's time in the commit
(``synchronous=FULL``: an fsync of the WAL on SQLite, a WAL flush on PostgreSQL) and, across
processes, waiting for the write lock. ``GroupCommit`` gives each database one writer thread per
process: callers hand it a *job* (a function of a ``Connection``), the writer runs every job
that is waiting in one write transaction (``BEGIN IMMEDIATE`` on SQLite, so the lock is taken
once for the whole batch), then commits once and only then wakes the callers. So nothing a job
wrote is handed out before it is durable, exactly as with a commit per call; durability
settings are unchanged.

A job that raises is rolled back alone and its caller gets the exception; the others go ahead.
Jobs rarely raise, so a batch first runs with no SAVEPOINT (two round trips a job); only when
one raises is the whole transaction rolled back and the batch run again, each job under its own
SAVEPOINT. A job may therefore run twice, its first run undone: it must do only database work
on the connection it is given (no signing, no network, nothing outside the transaction), which
it should anyway, since it runs while the batch holds the write lock. ``after_commit``
callbacks run in the caller's thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from sscard.filelock import exclusive_lock
from sscard.sqlschema import WRITE

T = TypeVar("T")
logger = logging.getLogger("sscard.groupcommit")

#: at most this many jobs share a transaction (bounds the time the write lock is held)
MAX_BATCH = 128


class GroupCommitError(Exception):
    """The batch's transaction could not be committed: none of its jobs took effect."""


@dataclass
class _Job(Generic[T]):
    work: Callable[[Connection], T]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    """One writer thread per process for ``engine`` (started on first use, restarted after a
    fork, since a forked child has no threads).

    On an SQLite file, the writers of several processes (gunicorn workers) take turns through
    an advisory lock file beside the database (``<db>-writer.lock``) before BEGIN IMMEDIATE:
    the kernel wakes the next one the moment the lock is released, where SQLite's busy handler
    would poll with sleeps of up to 100 ms (the p99 of lock waits). Other writers, which do not
    take it, are still serialised by SQLite itself."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH,
                 name: str = "group-commit") -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.name = name
        self._queue: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid = -1
        #: batches committed and jobs run by this process (for tests and the bench)
        self.batches = 0
        self.jobs = 0

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in the next batch; returns its result once the batch is
        committed, or raises what it raised (its writes rolled back) or ``GroupCommitError``."""
        self._ensure_writer()
        job: _Job[T] = _Job(work)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    @staticmethod
    def _alone(conn: Connection, job: _Job[Any]) -> None:
        try:
            job.result = job.work(conn)
        except BaseException as exc:
            conn.rollback()
            job.error = exc

    @staticmethod
    def _together(conn: Connection, batch: list[_Job[Any]]) -> bool:
        """Every job in one transaction, with no savepoint; True once committed. False, with
        everything rolled back, as soon as one raises."""
        with conn.begin() as transaction:
            for job in batch:
                try:
                    job.result = job.work(conn)
                except BaseException:  # run again job by job, which tells who failed
                    transaction.rollback()
                    for undone in batch:
                        undone.result = None
                    return False
        return True

    @staticmethod
    def _each_apart(conn: Connection, batch: list[_Job[Any]]) -> None:
        """Every job under its own savepoint: one that raises is rolled back alone, its caller
        gets the exception, the others go ahead."""
        for job in batch:
            savepoint = conn.begin_nested()
            try:
                job.result = job.work(conn)
            except BaseException as exc:
                savepoint.rollback()
                job.error = exc
            else:
                savepoint.commit()

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        path = self._lock_path()
        if path is None:
            yield
            return
        with exclusive_lock(path):
            yield

    def _lock_path(self) -> str | None:
        url = self.engine.url
        if url.get_backend_name() != "sqlite" or not url.database or \
                url.database == ":memory:" or url.database.startswith("file:"):
            return None
        return f"{url.database}-writer.lock"

    def _ensure_writer(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                if self._pid != -1:  # a forked child: the parent's queue and thread are not ours
                    self._queue = queue.SimpleQueue()
                threading.Thread(target=self._loop, name=self.name, daemon=True).start()
                self._pid = os.getpid()

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._run_batch(batch)
            finally:
                for job in batch:
                    job.done.set()

    def _run_batch(self, batch: list[_Job[Any]]) -> None:
        try:
            with self._turn(), self.engine.connect().execution_options(**WRITE) as conn:
                if len(batch) == 1:  # alone: its failure rolls back the transaction
                    with conn.begin():
                        self._alone(conn, batch[0])
                elif not self._together(conn, batch):
                    with conn.begin():
                        self._each_apart(conn, batch)
            self.batches += 1
            self.jobs += len(batch)
        except Exception as exc:  # BEGIN or COMMIT failed: nothing of the batch is in
            logger.warning("group commit of %d jobs failed: %s", len(batch), exc)
            failure = GroupCommitError(f"the database did not commit the write: {exc}")
            for job in batch:
                if job.error is None:
                    job.error = failure
                    job.result = None
