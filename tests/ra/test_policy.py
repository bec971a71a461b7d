"""The approval policy's pure functions."""

from __future__ import annotations

import datetime as dt

import pytest

from ra.models import RequestKind, RequestState, Role
from ra.policy import BatchFacts, Decision, Policy, RequestFacts, batch_covers, decide

OFFICER = frozenset({Role.OFFICER})
POLICY = Policy()


def facts(kind: RequestKind, approvals: tuple[str, ...] = (),
          state: RequestState = RequestState.SUBMITTED) -> RequestFacts:
    return RequestFacts(kind, state, "alice", approvals)


@pytest.mark.parametrize("kind,needed", [(RequestKind.ENROLLMENT, 1), (RequestKind.RENEWAL, 1),
                                         (RequestKind.REVOCATION, 2),
                                         (RequestKind.KEY_RECOVERY, 2)])
def test_approvals_needed(kind: RequestKind, needed: int) -> None:
    first = decide(POLICY, facts(kind), "bob", OFFICER, True)
    assert first.allowed and first.approvals_after == 1
    assert first.new_state is (RequestState.APPROVED if needed == 1 else RequestState.SUBMITTED)
    if needed == 2:
        second = decide(POLICY, facts(kind, ("bob",)), "carol", OFFICER, True)
        assert second.allowed and second.new_state is RequestState.APPROVED


def test_requester_never_decides_own_request() -> None:
    for approve in (True, False):
        verdict = decide(POLICY, facts(RequestKind.ENROLLMENT), "alice", OFFICER, approve)
        assert not verdict.allowed and "own request" in verdict.reason


def test_same_officer_twice_is_not_dual_control() -> None:
    verdict = decide(POLICY, facts(RequestKind.REVOCATION, ("bob",)), "bob", OFFICER, True)
    assert not verdict.allowed and "different officer" in verdict.reason


def test_only_officers_decide() -> None:
    for roles in ({Role.AUDITOR}, {Role.OPERATOR}, {Role.ADMINISTRATOR}, set()):
        verdict = decide(POLICY, facts(RequestKind.ENROLLMENT), "bob", frozenset(roles), True)
        assert not verdict.allowed and "not an RA officer" in verdict.reason


@pytest.mark.parametrize("state", [RequestState.APPROVED, RequestState.DONE,
                                   RequestState.REJECTED, RequestState.FAILED])
def test_decided_requests_stay_decided(state: RequestState) -> None:
    verdict = decide(POLICY, facts(RequestKind.ENROLLMENT, state=state), "bob", OFFICER, True)
    assert not verdict.allowed and state.value in verdict.reason


def test_one_rejection_rejects() -> None:
    verdict = decide(POLICY, facts(RequestKind.REVOCATION, ("bob",)), "carol", OFFICER, False)
    assert verdict.allowed and verdict.new_state is RequestState.REJECTED


def test_dual_control_cannot_be_configured_away() -> None:
    with pytest.raises(ValueError, match="two approvers"):
        Policy({**POLICY.approvers, RequestKind.REVOCATION: 1})
    with pytest.raises(ValueError, match="two approvers"):
        Policy({**POLICY.approvers, RequestKind.KEY_RECOVERY: 1})
    three = Policy({**POLICY.approvers, RequestKind.REVOCATION: 3})
    assert decide(three, facts(RequestKind.REVOCATION, ("b", "c")), "d", OFFICER,
                  True).new_state is RequestState.APPROVED
    assert decide(three, facts(RequestKind.REVOCATION, ("b",)), "c", OFFICER,
                  True).new_state is RequestState.SUBMITTED


NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
SSN = "110101198001010011"


def covers(batch: BatchFacts | None, requester: str = "station",
           kind: RequestKind = RequestKind.ENROLLMENT, ssn: str = SSN,
           now: dt.datetime = NOW) -> Decision:
    return batch_covers(batch, kind, requester, ssn, now)


def test_batch_pre_authorisation() -> None:
    later = NOW + dt.timedelta(hours=1)
    batch = BatchFacts("b1", "bob", limit=2, used=0, active=True, station="station",
                       expires_at=later)
    assert covers(batch).allowed
    assert not covers(batch, kind=RequestKind.REVOCATION).allowed
    full = BatchFacts("b1", "bob", limit=2, used=2, active=True, station="station",
                      expires_at=later)
    assert "used up" in covers(full).reason
    closed = BatchFacts("b1", "bob", limit=2, used=0, active=False, station="station",
                        expires_at=later)
    assert "closed" in covers(closed).reason
    assert not covers(None).allowed


def test_batch_is_bound_to_station_cardholders_and_time() -> None:
    """Finding 3: a batch approved enrollments from every API client, for anyone, forever."""
    later = NOW + dt.timedelta(hours=1)
    batch = BatchFacts("b1", "bob", limit=2, used=0, active=True, station="station",
                       cardholders=(SSN,), expires_at=later)
    assert covers(batch).allowed
    assert "not authorised for kiosk-9" in covers(batch, requester="kiosk-9").reason
    assert "not authorised for bob" in covers(batch, requester="bob").reason
    assert "not in batch" in covers(batch, ssn="110101198001010022").reason
    assert "expired" in covers(batch, now=later).reason
    unbound = BatchFacts("old", "bob", limit=9, used=0, active=True)  # from before binding
    assert not covers(unbound).allowed and not covers(unbound, requester="x").allowed


def test_two_accounts_of_one_person_are_one_approver() -> None:
    """Finding 8: an administrator made two officer accounts and approved as both."""
    first = decide(POLICY, facts(RequestKind.REVOCATION), "zhao-a", OFFICER, True, "P1")
    assert first.allowed and first.new_state is RequestState.SUBMITTED
    second = decide(POLICY, facts(RequestKind.REVOCATION, ("P1",)), "zhao-b", OFFICER, True,
                    "P1")
    assert not second.allowed and "another person" in second.reason
    own = RequestFacts(RequestKind.REVOCATION, RequestState.SUBMITTED, "zhao-a",
                       requester_person="P1")
    assert "requester" in decide(POLICY, own, "zhao-b", OFFICER, True, "P1").reason
    both = frozenset({Role.OFFICER, Role.ADMINISTRATOR})  # an account from before the split
    assert "administrators do not decide" in decide(POLICY, facts(RequestKind.REVOCATION),
                                                    "admin", both, True).reason
