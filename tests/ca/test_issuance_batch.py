"""Batch issuance over ``sscard ca serve`` (``POST /api/v1/certificates/batch``), on SQLite and
PostgreSQL, through the RA's client (``ca.client.CaClient.issue_batch``):

- the attacks first: a caller without ``attest-pop`` (or with an API token) vouching for proof
  of possession is refused and recorded; a replayed batch is refused; an attested key that is not
  the CSR's is refused for that entry alone; a batch over the size limit is refused whole;
- each entry is checked, answered and audited on its own: a bad entry does not stop the others,
  an entry with a request id issued before gets the same certificate (``repeated``), a request
  id used for another request is refused; every certificate handed out is stored and named in
  exactly one 'success' record linked to its 'attempt', and the audit log verifies.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from bench._common import stop_group
from ca.authority import CertificateAuthority
from ca.client import CaClient
from ca.errors import NotPermitted, RequestRefused
from ca.records import MAX_BATCH_ITEMS, IssuedCertificate
from sscard import httpsig
from sscard.audit import AuditLog, AuditRecord
from sscard.keys.software import SoftwareKey
from sscard.sqlschema import make_engine
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.parse import load_csr
from sscard.x509.pem import der_to_pem, pem_to_der
from tests.ca.test_issuance_http_load import Rig, _check_stored, _rig, _start
from tests.ca.test_service import new_csr
from tests.ca.test_service_cli import free_port, sscard

BATCH = "/api/v1/certificates/batch"
PROFILE = "business-system"


@dataclass
class BatchRig(Rig):
    #: a principal that may issue business-system certificates, but not attest possession
    other: httpsig.RequestSigner


@pytest.fixture
def rig(tmp_path: Path, database_url: str) -> BatchRig:
    """A CA on SQLite and on PostgreSQL (``tests/ca/conftest.py``), its RA principal (``--ra``:
    with ``attest-pop``), a principal ``other`` that may only issue, and a token principal
    ``robot`` with the RA's permissions."""
    base = _rig(tmp_path, database_url)
    key = SoftwareKey.generate("ec-p256")
    csr = CsrBuilder().subject(parse_name("CN=other-service,C=CN")).sign(key)
    with CertificateAuthority.open(base.home, audit=AuditLog.at_home(base.home)) as authority:
        cert = authority.issue_from_csr(csr.dump(), "service").certificate
    (tmp_path / "other.pem").write_bytes(der_to_pem(cert.dump(), "CERTIFICATE"))
    sscard(base.home, "ca", "principal", "add", "other", "--operation", "issue", "--profile",
           PROFILE, "--certificate", str(tmp_path / "other.pem"))
    sscard(base.home, "ca", "principal", "add", "robot", "--ra", "--token-out",
           str(tmp_path / "robot.token"))
    return BatchRig(**vars(base), other=httpsig.RequestSigner(key, cert))


@pytest.fixture
def served(rig: BatchRig, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc: subprocess.Popen[bytes] = _start(rig, tmp_path, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc)


def _csr_der(cn: str) -> bytes:
    return pem_to_der(new_csr(cn)[1], "CERTIFICATE REQUEST")


def _spki_sha256(csr_der: bytes) -> str:
    spki = load_csr(csr_der)["certification_request_info"]["subject_pk_info"].dump()
    return hashlib.sha256(spki).hexdigest()


def _send(url: str, signer: httpsig.RequestSigner, doc: dict[str, object],
          headers: dict[str, str] | None = None) -> tuple[requests.Response, dict[str, str]]:
    body = json.dumps(doc).encode()
    headers = headers or signer.headers("POST", BATCH, "", body)
    answer = requests.post(url + BATCH, data=body, timeout=120,
                           headers={**headers, "Content-Type": "application/json"})
    return answer, headers


def _entry(csr_der: bytes, **more: str) -> dict[str, str]:
    return {"csr": der_to_pem(csr_der, "CERTIFICATE REQUEST").decode("ascii"), **more}


def _count(rig: Rig, sql: str) -> int:
    engine = make_engine(rig.db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar() or 0)
    finally:
        engine.dispose()


def _issued_count(rig: Rig) -> int:
    return _count(rig, f"SELECT count(*) FROM certificates WHERE profile = '{PROFILE}'")


@pytest.mark.timeout(600)
def test_batch_attacks_are_refused(rig: BatchRig, served: str, tmp_path: Path) -> None:
    csr = _csr_der("Attested 1")
    attested = {"profile": PROFILE, "requests": [
        _entry(csr, attested_key_sha256=_spki_sha256(csr))]}
    refusals = _count(rig, "SELECT count(*) FROM audit_record WHERE action = 'ca.api.refused'")

    # a caller that may issue but not attest: the whole request is refused, naming the
    # permission, and recorded
    answer, _ = _send(served, rig.other, attested)
    assert answer.status_code == 403, answer.text
    assert answer.json()["permission"] == f"attest-pop profile={PROFILE} ca=issuing"
    # the same caller without the attestation is served (the CA verifies possession itself)
    plain, _ = _send(served, rig.other, {"profile": PROFILE, "requests": [_entry(csr)]})
    assert plain.status_code == 200 and "serial" in plain.json()["results"][0], plain.text

    # an API token, even one holding attest-pop, cannot vouch: only a signed request does
    token = (tmp_path / "robot.token").read_text().strip()
    body = json.dumps(attested).encode()
    by_token = requests.post(served + BATCH, data=body, timeout=120, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert by_token.status_code == 403, by_token.text
    assert _count(rig, "SELECT count(*) FROM audit_record WHERE action = 'ca.api.refused'") \
        == refusals + 2

    # a replayed batch: refused, nothing issued again
    first, headers = _send(served, rig.signer, attested)
    assert first.status_code == 200 and "serial" in first.json()["results"][0], first.text
    before = _issued_count(rig)
    again, _ = _send(served, rig.signer, attested, headers)
    assert (again.status_code, again.json()["code"]) == (401, "replayed_request")
    assert _issued_count(rig) == before

    # an attested key that is not the CSR's: that entry alone is refused
    good, bad, mine = _csr_der("Good 1"), _csr_der("Swapped"), _csr_der("Other key")
    mixed = {"profile": PROFILE, "requests": [
        _entry(good, attested_key_sha256=_spki_sha256(good)),
        _entry(bad, attested_key_sha256=_spki_sha256(mine)),
    ]}
    answer, _ = _send(served, rig.signer, mixed)
    results = answer.json()["results"]
    assert "serial" in results[0]
    assert results[1]["error"]["code"] == "refused"
    assert "possession the caller attested" in results[1]["error"]["detail"]
    assert _issued_count(rig) == before + 1

    # too many entries: refused whole, before anything is checked or signed
    over = {"profile": PROFILE, "requests": [_entry(good)] * (MAX_BATCH_ITEMS + 1)}
    answer, _ = _send(served, rig.signer, over)
    assert answer.status_code == 413, answer.text
    client = CaClient(served, signer=rig.signer)
    with pytest.raises(ValueError):
        client.issue_batch([(good, None)] * (MAX_BATCH_ITEMS + 1), PROFILE)
    # and a principal's limits still hold in a batch: a profile it may not use
    with pytest.raises(NotPermitted):
        client.issue_batch([(good, None)], "cardholder-sign-no-such")
    assert _issued_count(rig) == before + 1


@pytest.mark.timeout(600)
def test_batch_entries_are_issued_audited_and_idempotent_each(rig: Rig, served: str) -> None:
    client = CaClient(served, signer=rig.signer)
    csrs = [_csr_der(f"Card Holder Batch {i}") for i in range(6)]
    forged = bytearray(csrs[3])
    forged[-5] ^= 0x01  # the CSR's signature no longer verifies: no proof of possession
    entries: list[tuple[bytes, str | None]] = [
        (csrs[0], "card-0"), (csrs[1], "card-1"), (csrs[2], None), (bytes(forged), "card-3"),
        (csrs[4], "card-4"), (csrs[5], None)]
    for attest in (False, True):
        results = client.issue_batch(entries, PROFILE, attest=attest)
        assert [type(r) for r in results] == [IssuedCertificate] * 3 + [RequestRefused] + \
            [IssuedCertificate] * 2
        if not attest:
            first = results
        else:  # asked again with the same ids: the same certificates; new ones without ids
            for i in (0, 1, 4):
                assert results[i] == first[i]
            for i in (2, 5):
                assert results[i].serial != first[i].serial  # type: ignore[union-attr]
    # a request id used for another CSR is refused for that entry, the rest go ahead
    reused = client.issue_batch([(csrs[2], "card-0"), (_csr_der("Fresh"), "card-9")], PROFILE)
    assert isinstance(reused[0], RequestRefused) and "another request" in str(reused[0])
    assert isinstance(reused[1], IssuedCertificate)

    issued = [(r.serial_hex, r.der) for r in (*first, *results, reused[1])
              if isinstance(r, IssuedCertificate)]
    distinct = dict(issued)
    assert len(distinct) == 5 + 2 + 1
    _check_stored(rig, list(distinct.items()))
    # a batch is one attempt (count, request ids) and outcome records listing its items:
    # every refusal by item index and request id with its reason, repeats marked as such
    batches = _batch_records(rig)
    assert [(a.details["count"], a.details["request_ids"]) for a, _ in batches] == [
        (6, ["card-0", "card-1", None, "card-3", "card-4", None])] * 2 + [
        (2, ["card-0", "card-9"])]
    # (the RA's client attests only the keys whose proof it verified: not the forged CSR's)
    assert [a.details.get("possession_attested") for a, _ in batches] == [None, 5, None]
    denied = [[(i["item"], i.get("request_id"), i["reason"]) for r in outcomes
               if r.outcome == "denied" for i in r.details["items"]] for _, outcomes in batches]
    assert [[d[:2] for d in ds] for ds in denied] == [[(3, "card-3")]] * 2 + [[(0, "card-0")]]
    assert all(ds[0][2] for ds in denied) and "another request" in denied[2][0][2]
    items = [[(i["item"], bool(i.get("repeated"))) for r in outcomes if r.outcome == "success"
              for i in r.details["items"]] for _, outcomes in batches]
    assert items == [[(0, False), (1, False), (2, False), (4, False), (5, False)],
                     [(0, True), (1, True), (2, False), (4, True), (5, False)], [(1, False)]]


def _batch_records(rig: Rig) -> list[tuple[AuditRecord, list[AuditRecord]]]:
    """Each batch's attempt record of ``ca.certificate.issue``, with the outcome records that
    name it."""
    engine = make_engine(rig.db_url)
    try:
        records = list(AuditLog(engine, create=False).records(
            actions=["ca.certificate.issue"], obj="profile:business-system"))
    finally:
        engine.dispose()
    return [(r.record, [o.record for o in records
                        if o.record.details.get("attempt_seq") == r.seq])
            for r in records if r.record.outcome == "attempt"
            and r.record.details.get("request") == "batch"]
