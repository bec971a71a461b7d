"""Finding 7 (races), on SQLite and on PostgreSQL, with real threads released together:

- 50 parallel wrong passwords for one account get exactly the lock-out limit evaluated (the
  review saw 60 evaluated before the account locked);
- 10 officers approving one enrollment at once: one decision counts, the request is carried out
  once and exactly one certificate pair is issued (the review got 4-5 certificates for one card);
- 10 officers approving one revocation (dual control) at once: exactly two approvals count and
  the revocation runs once (without the lock, the request stayed 'submitted' with two
  approvals, or ran twice)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from ra.errors import AuthenticationFailed, Forbidden
from ra.models import Approval, Request, Role
from tests.pg import (
    PostgresCluster,
    pg_cluster,  # noqa: F401  (fixture)
)
from tests.ra.enroll import new_enrollment
from tests.ra.rig import PASSWORD, RaRig, make_rig, person_of

PARALLEL_LOGINS = 50
PARALLEL_OFFICERS = 10


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def race_rig(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaRig]:
    url = None
    cluster: PostgresCluster | None = None
    if request.param == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database("ra_races")
    rig = make_rig(tmp_path_factory.mktemp(f"races-{request.param}"), ra_url=url)
    for i in range(PARALLEL_OFFICERS):
        rig.ra.add_officer(None, f"racer{i}", f"Racer {i}", PASSWORD, {Role.OFFICER},
                           person_id=person_of(500 + i))
    yield rig
    rig.close()
    if cluster is not None and url is not None:
        cluster.drop_database(url)


def all_at_once(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(i)`` in ``count`` threads released by one barrier; results or exceptions."""
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        try:
            return call(i)
        except Exception as exc:  # collected and checked by the test
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def login_verdicts(rig: RaRig, username: str) -> list[str]:
    return [str(r.record.details.get("reason")) for r in rig.audit.records()
            if r.record.action == "ra.login" and r.record.object == username
            and r.record.outcome == "denied"]


def test_parallel_wrong_passwords_evaluate_exactly_the_limit(race_rig: RaRig) -> None:
    rig = race_rig
    rig.ra.add_officer(None, "victim", "Victim", PASSWORD, {Role.OFFICER},
                       person_id=person_of(499))
    outcomes = all_at_once(PARALLEL_LOGINS, lambda i: rig.ra.authenticate(
        "victim", f"guess number {i}", "203.0.113.50"))
    assert all(isinstance(o, AuthenticationFailed) for o in outcomes), outcomes
    verdicts = login_verdicts(rig, "victim")
    evaluated = [v for v in verdicts if v.startswith("wrong password")]
    assert len(evaluated) == rig.ra.config.max_failed_logins, verdicts
    assert len(verdicts) == PARALLEL_LOGINS
    # and now even the right password from that source is refused, with the same message
    with pytest.raises(AuthenticationFailed) as refused:
        rig.ra.authenticate("victim", PASSWORD, "203.0.113.50")
    assert str(refused.value) == str(outcomes[0])


def issued_for(rig: RaRig, ssn: str) -> list[str]:
    return [profile for _status, profile, subject in rig.ca.list_certificates(limit=10_000)
            if ssn in subject]


def test_parallel_approvals_issue_one_certificate_pair(race_rig: RaRig) -> None:
    rig = race_rig
    pending, _key = new_enrollment(rig)
    rid, ssn = pending["request_id"], pending["cardholder"]["ssn"]
    before = rig.audit.size()
    outcomes = all_at_once(PARALLEL_OFFICERS, lambda i: rig.ra.approve(
        rig.ra.session_actor(f"racer{i}"), rid, "documents checked"))
    wins = [o for o in outcomes if isinstance(o, dict)]
    losses = [o for o in outcomes if not isinstance(o, dict)]
    assert len(wins) == 1, outcomes
    assert all(isinstance(o, Forbidden) and "not waiting for a decision" in str(o)
               for o in losses), losses
    info = rig.ra.request(rig.actor("officer1"), rid)
    assert info["state"] == "done" and len(info["decisions"]) == 1
    assert sorted(issued_for(rig, ssn)) == ["cardholder-encrypt", "cardholder-sign"]
    issues = [r.record for r in rig.audit.records(before + 1)
              if r.record.action == "ra.enrollment.issue" and r.record.object == rid
              and r.record.outcome == "success"]
    assert len(issues) == 1
    # a station asking again for the finished request gets it back, and nothing more is issued
    assert rig.ra.request(rig.client, rid)["state"] == "done"
    assert len(issued_for(rig, ssn)) == 2


def test_parallel_dual_control_counts_two_approvals_once(race_rig: RaRig) -> None:
    rig = race_rig
    pending, _key = new_enrollment(rig)
    issued = rig.ra.approve(rig.actor("officer1"), pending["request_id"], "ok")
    rev = rig.ra.submit_revocation(rig.actor("operator"),
                                   serial=issued["card"]["sign_serial"], reason="keyCompromise")
    rid = rev["request_id"]
    before = rig.audit.size()
    outcomes = all_at_once(PARALLEL_OFFICERS, lambda i: rig.ra.approve(
        rig.ra.session_actor(f"racer{i}"), rid, "loss report checked"))
    assert sum(isinstance(o, dict) for o in outcomes) == 2, outcomes
    with rig.ra.engine.connect() as conn:
        request_pk = conn.execute(select(Request.id).where(Request.public_id == rid)).scalar()
        approvals = conn.execute(select(func.count()).select_from(Approval).where(
            Approval.request_id == request_pk)).scalar()
    assert approvals == 2
    assert rig.ra.request(rig.actor("officer1"), rid)["state"] == "done"
    runs = [r.record for r in rig.audit.records(before + 1)
            if r.record.action == "ra.revocation.execute" and r.record.object == rid
            and r.record.outcome == "success"]
    assert len(runs) == 1


def test_parallel_submissions_never_overrun_a_batch(race_rig: RaRig) -> None:
    """Ten enrollments filed at once into a batch of three: three approved, seven refused with
    nothing stored for them."""
    rig = race_rig
    name = f"race-batch-{rig.ra.engine.dialect.name}"
    rig.ra.authorise_batch(rig.actor("officer2"), name, 3, station="station-1")
    outcomes = all_at_once(PARALLEL_OFFICERS, lambda i: new_enrollment(rig, batch=name)[0])
    done = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if not isinstance(o, dict)]
    assert len(done) == 3 and all(o["state"] == "done" for o in done), outcomes
    assert all(isinstance(o, Forbidden) and "used up" in str(o) for o in refused), refused
    with rig.ra.engine.connect() as conn:
        filed = conn.execute(select(func.count()).select_from(Request).where(
            Request.batch_name == name)).scalar()
    assert filed == 3
