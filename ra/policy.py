"""Approval policy as pure functions: who may decide a request, and what a decision leads to.

The service (``ra.service``) loads the facts from the database, asks these functions, and only
then writes; nothing here touches storage, so every rule is tested directly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ra.models import RequestKind, RequestState, Role

#: distinct approvers per request type; revocation and key recovery are dual control
DEFAULT_APPROVERS: Mapping[RequestKind, int] = {
    RequestKind.ENROLLMENT: 1,
    RequestKind.RENEWAL: 1,
    RequestKind.REVOCATION: 2,
    RequestKind.KEY_RECOVERY: 2,
}


@dataclass(frozen=True)
class Policy:
    approvers: Mapping[RequestKind, int] = field(default_factory=lambda: dict(DEFAULT_APPROVERS))

    def __post_init__(self) -> None:
        for kind in (RequestKind.REVOCATION, RequestKind.KEY_RECOVERY):
            if self.approvers.get(kind, 0) < 2:
                raise ValueError(f"{kind.value} needs at least two approvers (dual control)")
        for kind in RequestKind:
            if self.approvers.get(kind, 0) < 1:
                raise ValueError(f"{kind.value} needs at least one approver")

    def required(self, kind: RequestKind) -> int:
        return self.approvers[kind]


@dataclass(frozen=True)
class RequestFacts:
    """What a decision depends on. Approvers are counted as people: ``approvals`` and
    ``rejections`` hold the person of each officer account that decided (its ID number)."""

    kind: RequestKind
    state: RequestState
    requested_by: str
    approvals: Sequence[str] = ()  # people who approved so far
    rejections: Sequence[str] = ()
    #: the person behind the requesting account, when an officer filed it
    requester_person: str | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: why not, in English (the API's detail, the audit log)
    reason: str = ""
    #: after this decision: the request's new state (unchanged while approvals are missing)
    new_state: RequestState | None = None
    approvals_after: int = 0
    #: why not as a message id and the values it names (ra.errors.RAError: the UI says it in
    #: the reader's language)
    code: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)


def decide(policy: Policy, facts: RequestFacts, officer: str, roles: frozenset[Role],
           approve: bool, person: str | None = None) -> Decision:
    """May ``officer`` (an account of ``person``; by default a person of its own) approve (or
    reject) this request, and what state follows?"""
    me = person or officer
    if Role.OFFICER not in roles:
        return Decision(False, f"{officer} is not an RA officer", code="not_an_officer",
                        params={"name": officer})
    if Role.ADMINISTRATOR in roles:
        # accounts from before the separation: who administers accounts does not approve
        return Decision(False, f"{officer} is an administrator account; administrators do not "
                               "decide requests", code="administrator_decides",
                        params={"name": officer})
    if facts.state is not RequestState.SUBMITTED:
        return Decision(False, f"the request is {facts.state.value}, not waiting for a decision",
                        code="not_waiting", params={"state": facts.state.value})
    if officer == facts.requested_by or me == facts.requester_person:
        return Decision(False, "the requester cannot decide their own request",
                        code="own_request")
    if me in facts.approvals or me in facts.rejections:
        return Decision(False, f"{officer}'s person has already decided this request; a "
                               "second approval must come from a different officer "
                               "(another person)", code="already_decided",
                        params={"name": officer})
    if not approve:
        return Decision(True, new_state=RequestState.REJECTED,
                        approvals_after=len(facts.approvals))
    count = len(facts.approvals) + 1
    needed = policy.required(facts.kind)
    return Decision(True, new_state=RequestState.APPROVED if count >= needed
                    else RequestState.SUBMITTED, approvals_after=count)


@dataclass(frozen=True)
class BatchFacts:
    name: str
    authorised_by: str
    limit: int
    used: int
    active: bool
    #: the API client that may submit into the batch; None (a batch from before binding): none
    station: str | None = None
    #: the social security numbers it covers; None: any cardholder
    cardholders: tuple[str, ...] | None = None
    expires_at: dt.datetime | None = None


def batch_covers(batch: BatchFacts | None, kind: RequestKind, requester: str, ssn: str,
                 now: dt.datetime) -> Decision:
    """Does a pre-authorised batch approve this request on submission? Only enrollments, only
    from the batch's station, for its cardholders, before it expires and while it has room,
    and never when the requester is the one who authorised it."""
    if batch is None:
        return Decision(False, "no such pre-authorised batch", code="no_batch")
    if kind is not RequestKind.ENROLLMENT:
        return Decision(False, "only enrollments can be pre-authorised",
                        code="batch_enrollments_only")
    if not batch.active:
        return Decision(False, f"batch {batch.name} is closed", code="batch_closed",
                        params={"name": batch.name})
    if batch.station is None or requester != batch.station:
        return Decision(False, f"batch {batch.name} is not authorised for {requester}",
                        code="batch_other_station",
                        params={"name": batch.name, "station": requester})
    if batch.expires_at is None or now >= batch.expires_at:
        return Decision(False, f"batch {batch.name} has expired", code="batch_expired",
                        params={"name": batch.name})
    if batch.cardholders is not None and ssn not in batch.cardholders:
        return Decision(False, f"cardholder {ssn} is not in batch {batch.name}",
                        code="batch_other_cardholder", params={"name": batch.name, "ssn": ssn})
    if batch.used >= batch.limit:
        return Decision(False, f"batch {batch.name} is used up ({batch.limit} enrollments)",
                        code="batch_used_up", params={"name": batch.name, "limit": batch.limit})
    if requester == batch.authorised_by:
        return Decision(False, "the officer who authorised the batch cannot also submit into "
                               "it", code="batch_own")
    return Decision(True, new_state=RequestState.APPROVED, approvals_after=1)
