"""A request with an idempotency key (the RA's ``request_id``) on a CA whose audit log lives in
its own database, as ``sscard ca serve --audit-db <the CA's URL>`` runs it: the lookup of an
earlier answer and the certificate with both audit records in one transaction (the path a
batch takes), on SQLite and PostgreSQL, with and without the group commit:

- asked again, the same certificate, recorded as ``repeated``; a key reused for another request
  is refused (and recorded 'denied');
- the claim (a signed request's nonce) goes in the same transaction: a replay stays refused even
  though the answer exists, and a refused request is not claimed by the CA (its caller does).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ca.authority import CertificateAuthority, IssueRequest, initialise
from ca.errors import RequestRefused
from sscard.audit import AuditLog
from sscard.audit.records import MAX_DETAILS_BYTES
from sscard.audit.verify import verify_log
from sscard.httpsig import SignatureError
from tests.ca.conftest import write_config
from tests.ca.test_service import new_csr

PASS = b"idempotent test passphrase"
PROFILE = "business-system"


@pytest.fixture(params=["one transaction", "group commit"])
def authority(request: pytest.FixtureRequest, tmp_path: Path,
              database_url: str) -> Iterator[CertificateAuthority]:
    home = tmp_path / "home"
    audit = AuditLog.open(database_url)
    initialise(home, write_config(tmp_path / "ca.toml", "ec-p256", database_url), PASS,
               audit=audit)
    ca = CertificateAuthority.open(home, PASS, audit=audit, actor="ra")
    if request.param == "group commit":
        ca.enable_group_commit()
    yield ca
    ca.close()


def _records(ca: CertificateAuthority) -> list[tuple[str, dict[str, object]]]:
    return [(r.record.outcome, r.record.details)
            for r in ca.audit.records(actions=["ca.certificate.issue"])
            if r.record.object == f"profile:{PROFILE}"]


def test_keyed_requests_share_the_one_transaction_path(authority: CertificateAuthority) -> None:
    _, csr = new_csr("Keyed 1")
    _, other = new_csr("Keyed 2")
    first = authority.issue_from_csr(csr, PROFILE, request_id="r-1")
    again = authority.issue_from_csr(csr, PROFILE, request_id="r-1")
    assert again == first
    with pytest.raises(RequestRefused, match="another request"):
        authority.issue_from_csr(other, PROFILE, request_id="r-1")
    with pytest.raises(RequestRefused, match="request_id must be"):
        authority.issue_from_csr(other, PROFILE, request_id="no spaces allowed")
    second = authority.issue_from_csr(other, PROFILE, request_id="r-2")
    assert second.serial != first.serial
    outcomes = _records(authority)
    # (a malformed id is refused before the CA takes the request up, as ever)
    assert [o for o, _ in outcomes] == ["attempt", "success", "attempt", "success", "attempt",
                                        "denied", "attempt", "success"]
    assert outcomes[3][1]["repeated"] is True
    assert outcomes[1][1]["serials"] == outcomes[3][1]["serials"] == [first.serial_hex]
    assert outcomes[0][1]["request_id"] == "r-1"
    with authority.engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT request_key FROM requests WHERE request_key IS NOT "
                                    "NULL ORDER BY request_key")).scalars().all()
    assert keys == ["ra/r-1", "ra/r-2"]


def test_a_claim_is_made_with_the_answer_and_a_replay_stays_refused(
        authority: CertificateAuthority) -> None:
    claimed: list[str] = []

    def claim_once(conn: sa.Connection) -> None:
        if claimed:
            raise SignatureError("replayed_request", "this signed request was already used")
        claimed.append("nonce")

    _, csr = new_csr("Claimed")
    first = authority.issue_from_csr(csr, PROFILE, request_id="c-1", claim=claim_once)
    assert claimed == ["nonce"]
    # the same signed request again: the answer exists, but the replay is refused, recorded
    with pytest.raises(SignatureError):
        authority.issue_from_csr(csr, PROFILE, request_id="c-1", claim=claim_once)
    assert _records(authority)[-1][0] == "denied"
    # a request the profile refuses is not claimed here (the service claims it, see issue())
    fresh: list[str] = []
    with pytest.raises(RequestRefused):
        authority.issue_from_csr(csr, "cardholder-sign", request_id="c-2",
                                 claim=lambda conn: fresh.append("nonce"))
    assert fresh == []
    assert authority.issue_from_csr(csr, PROFILE, request_id="c-1") == first


def test_a_batch_with_the_audit_log_elsewhere_is_audited_entry_by_entry(
        tmp_path: Path, database_url: str) -> None:
    """``sscard ca serve`` keeps the audit log in <home>/audit.sqlite unless told otherwise:
    a batch is then one audited issuance per entry, answered and recorded each on its own."""
    home = tmp_path / "home"
    initialise(home, write_config(tmp_path / "ca.toml", "ec-p256", database_url), PASS,
               audit=AuditLog.at_home(home))
    with CertificateAuthority.open(home, PASS, audit=AuditLog.at_home(home),
                                   actor="ra") as ca:
        assert not ca._audit_in_database()
        _, good = new_csr("Apart 1")
        _, keyed = new_csr("Apart 2")
        entries = [IssueRequest(csr=good), IssueRequest(csr=b"not a CSR"),
                   IssueRequest(csr=keyed, request_id="a-1")]
        first = ca.issue_each(entries, PROFILE)
        assert first[0].issued is not None and first[2].issued is not None
        assert first[1].refused is not None and "rejected" in first[1].refused
        again = ca.issue_each([IssueRequest(csr=keyed, request_id="a-1")], PROFILE)
        assert again[0].issued == first[2].issued and again[0].repeated
        outcomes = [o for o, _ in _records(ca)]
        assert outcomes == ["attempt", "success", "attempt", "denied", "attempt", "success",
                            "attempt", "success"]


def test_a_batch_is_one_attempt_and_outcome_records_listing_its_items(
        authority: CertificateAuthority) -> None:
    """A batch of 100 with the longest request ids: one attempt record, outcome records that
    list the items as many as fit (none cut: every serial and every refusal findable), all
    linked to the attempt, and the log verifies with no attempt left open."""
    csrs = [new_csr(f"Grouped Holder {i:03d} " + "x" * 30)[1] for i in range(100)]
    entries = [IssueRequest(csr=b"not a CSR" if i % 17 == 5 else csr,
                            request_id=f"{i:03d}-" + "r" * 124) for i, csr in enumerate(csrs)]
    before = authority.audit.size()
    outcomes = authority.issue_each(entries, PROFILE)
    refused_items = [i for i in range(100) if i % 17 == 5]
    assert [i for i, o in enumerate(outcomes) if o.refused is not None] == refused_items
    records = list(authority.audit.records(before + 1))
    attempt, *rest = records
    assert attempt.record.outcome == "attempt"
    assert attempt.record.details["count"] == 100
    listed = attempt.record.details["request_ids"]
    # the ids that did not fit in the attempt are named with their items
    assert listed == [e.request_id for e in entries[:len(listed)]]
    assert len(listed) + attempt.record.details["request_ids_cut"] == 100
    assert all(r.record.details["attempt_seq"] == attempt.seq for r in rest)
    assert all(len(r.record.details_json().encode()) <= MAX_DETAILS_BYTES for r in records)
    success = [i for r in rest if r.record.outcome == "success" for i in r.record.details["items"]]
    denied = [i for r in rest if r.record.outcome == "denied" for i in r.record.details["items"]]
    assert len([r for r in rest if r.record.outcome == "success"]) > 1  # too many for one
    assert "details_cut" not in str([r.record.details for r in rest])
    issued = {o.issued.serial_hex: i for i, o in enumerate(outcomes) if o.issued is not None}
    assert {i["serial"]: i["item"] for i in success} == issued
    assert all(i["request_id"] == entries[i["item"]].request_id and
               i["subject"].startswith(f"CN=Grouped Holder {i['item']:03d}") for i in success)
    assert [(i["item"], i["request_id"]) for i in denied] == [
        (n, entries[n].request_id) for n in refused_items]
    assert all("rejected" in i["reason"] for i in denied)
    report = verify_log(authority.audit.engine)
    assert report.intact, report.findings
    assert not [n for n in report.notes if "without an outcome" in n]
