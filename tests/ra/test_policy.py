"""The approval policy's pure functions."""

from __future__ import annotations

import pytest

from ra.models import RequestKind, RequestState, Role
from ra.policy import BatchFacts, Policy, RequestFacts, batch_covers, decide

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


def test_batch_pre_authorisation() -> None:
    batch = BatchFacts("b1", "bob", limit=2, used=0, active=True)
    assert batch_covers(batch, RequestKind.ENROLLMENT, "station").allowed
    assert not batch_covers(batch, RequestKind.REVOCATION, "station").allowed
    assert "authorised the batch" in batch_covers(batch, RequestKind.ENROLLMENT, "bob").reason
    full = BatchFacts("b1", "bob", limit=2, used=2, active=True)
    assert "used up" in batch_covers(full, RequestKind.ENROLLMENT, "station").reason
    closed = BatchFacts("b1", "bob", limit=2, used=0, active=False)
    assert "closed" in batch_covers(closed, RequestKind.ENROLLMENT, "station").reason
    assert not batch_covers(None, RequestKind.ENROLLMENT, "station").allowed
