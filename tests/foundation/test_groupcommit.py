"""``sscard.groupcommit``: waiting jobs share one transaction, with no savepoint unless one
fails; a failing job is rolled back alone (the batch run again, each job under a savepoint), on
SQLite and PostgreSQL; a failed commit fails every job of its batch and writes nothing; a forked
child gets its own writer. Real databases through the project's engine factory."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sscard.groupcommit import GroupCommit, GroupCommitError
from sscard.sqlschema import make_engine
from tests.pg import PostgresCluster, pg_cluster  # noqa: F401  (fixture)

metadata = sa.MetaData()
items = sa.Table("items", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("value", sa.Text, nullable=False))


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    metadata.create_all(engine)
    return engine


def _insert(value: str, row_id: int | None = None):  # type: ignore[no-untyped-def]
    def job(conn: sa.Connection) -> int:
        values = {"value": value} if row_id is None else {"id": row_id, "value": value}
        return int(conn.execute(sa.insert(items).values(**values)).inserted_primary_key[0])
    return job


def _values(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(items.c.value)).scalars())


def _run_while_blocked(committer: GroupCommit, jobs: list, release: threading.Event  # type: ignore[type-arg]
                       ) -> list[object]:
    """Queue ``jobs`` while the writer is held by a blocking job, then let it go: they all
    wait in the queue, so the writer takes them as one batch."""
    started = threading.Event()

    def blocker(conn: sa.Connection) -> None:
        started.set()
        release.wait(30)

    results: list[object] = [None] * len(jobs)
    first = threading.Thread(target=committer.run, args=(blocker,))
    first.start()
    assert started.wait(30)

    def call(i: int) -> None:
        try:
            results[i] = committer.run(jobs[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    while committer._queue.qsize() < len(jobs):  # all queued behind the blocker
        threading.Event().wait(0.01)
    release.set()
    first.join(30)
    for t in threads:
        t.join(30)
    return results


def test_waiting_jobs_share_one_commit(engine: sa.Engine) -> None:
    committer = GroupCommit(engine)
    results = _run_while_blocked(committer, [_insert(f"v{i}") for i in range(10)],
                                 threading.Event())
    assert sorted(results) == list(range(1, 11))  # type: ignore[type-var]
    assert _values(engine) == sorted(f"v{i}" for i in range(10))
    assert committer.batches == 2 and committer.jobs == 11  # the blocker's batch, then one


def test_a_failing_job_is_rolled_back_alone(engine: sa.Engine) -> None:
    committer = GroupCommit(engine)
    committer.run(_insert("taken", 7))

    def half_then_fail(conn: sa.Connection) -> None:
        conn.execute(sa.insert(items).values(value="half"))
        conn.execute(sa.insert(items).values(id=7, value="clash"))  # primary key taken

    results = _run_while_blocked(committer, [_insert("a"), half_then_fail, _insert("b")],
                                 threading.Event())
    assert isinstance(results[1], sa.exc.IntegrityError)
    assert _values(engine) == ["a", "b", "taken"]  # nothing of the failed job, not even "half"


def test_a_failed_commit_fails_the_whole_batch_and_writes_nothing(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fk.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER "
                             "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    committer = GroupCommit(engine)

    def good(conn: sa.Connection) -> str:
        conn.exec_driver_sql("INSERT INTO parent (id) VALUES (1)")
        return "ok"

    def dangling(conn: sa.Connection) -> str:  # checked only at COMMIT
        conn.exec_driver_sql("INSERT INTO child (id, parent) VALUES (1, 99)")
        return "ok"

    results = _run_while_blocked(committer, [good, dangling], threading.Event())
    assert all(isinstance(r, GroupCommitError) for r in results), results
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM parent").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM child").scalar() == 0
    assert committer.run(good) == "ok"  # the writer goes on with the next batch


def _child(committer: GroupCommit, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(committer.run(_insert("from child")))


def test_a_forked_child_gets_its_own_writer(engine: sa.Engine) -> None:
    committer = GroupCommit(engine)
    committer.run(_insert("from parent"))
    engine.dispose()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child, args=(committer, out))
    child.start()
    assert out.get(timeout=30) == 2
    child.join(30)
    assert child.exitcode == 0
    assert _values(engine) == ["from child", "from parent"]


def test_a_failing_job_alone_writes_nothing_and_the_writer_goes_on(engine: sa.Engine) -> None:
    committer = GroupCommit(engine)
    committer.run(_insert("taken", 7))

    def half_then_fail(conn: sa.Connection) -> None:
        conn.execute(sa.insert(items).values(value="half"))
        conn.execute(sa.insert(items).values(id=7, value="clash"))

    with pytest.raises(sa.exc.IntegrityError):
        committer.run(half_then_fail)
    assert committer.run(_insert("after")) > 0
    assert _values(engine) == ["after", "taken"]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    cluster: PostgresCluster | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'g.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database("groupcommit")
    engine = make_engine(url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()
    if cluster is not None:
        cluster.drop_database(url)


def test_jobs_run_without_savepoints_until_one_fails(any_engine: sa.Engine) -> None:
    """No SAVEPOINT while every job succeeds; when one raises (after writing, and on
    PostgreSQL leaving the transaction aborted), the batch is rolled back and run again job by
    job under savepoints: the others are committed once each, nothing of the failed one is."""
    sent: list[str] = []
    sa.event.listen(any_engine, "before_cursor_execute",
                    lambda _c, _cur, sql, *_: sent.append(sql.split()[0].upper()))
    runs: Counter[str] = Counter()

    def job(value: str, fail: bool = False):  # type: ignore[no-untyped-def]
        def work(conn: sa.Connection) -> str:
            runs[value] += 1
            conn.execute(sa.insert(items).values(value=value))
            if fail:
                conn.exec_driver_sql("SELECT * FROM no_such_table")  # aborts a PG transaction
            return value
        return work

    committer = GroupCommit(any_engine)
    results = _run_while_blocked(committer, [job("a"), job("b"), job("c")], threading.Event())
    assert results == ["a", "b", "c"]
    assert "SAVEPOINT" not in sent and runs == {"a": 1, "b": 1, "c": 1}
    sent.clear()
    results = _run_while_blocked(committer, [job("d"), job("bad", fail=True), job("e")],
                                 threading.Event())
    assert results[0] == "d" and results[2] == "e"
    assert isinstance(results[1], sa.exc.DBAPIError) and "no_such_table" in str(results[1])
    assert sent.count("SAVEPOINT") == 3  # the second run, one per job
    assert (runs["d"], runs["bad"], runs["e"]) == (2, 2, 1)  # the first run stopped at "bad"
    assert _values(any_engine) == ["a", "b", "c", "d", "e"]  # once each, no "bad"
    assert committer.run(job("after")) == "after"  # the writer goes on
