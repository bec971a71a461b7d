"""The CA library API on SQLite and on PostgreSQL: hierarchy, issuance committed before return,
revocation errors, status, full and delta CRLs, batch issuance, serial collisions, and eight
processes issuing at once."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path

import pytest
import sqlalchemy as sa
from asn1crypto import crl as asn1crl
from asn1crypto import x509

from ca.authority import CertificateAuthority, IssueRequest, initialise
from ca.errors import (
    AlreadyInitialised,
    AlreadyRevoked,
    CAError,
    RequestRefused,
    StorageError,
    UnknownCertificate,
)
from ca.records import RevocationReason, Status
from ca.storage import CertificateRecord, CRLRecord, make_engine
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.verify import verify_certificate_signature, verify_crl_signature
from tests.ca.conftest import HOLDER, SSN, write_config

PASS = b"correct horse battery staple"


@pytest.fixture
def authority(tmp_path: Path, database_url: str) -> CertificateAuthority:
    home = tmp_path / "home"
    initialise(home, write_config(tmp_path / "ca.toml", database_url=database_url), PASS,
               audit=AuditLog.at_home(home))
    ca = CertificateAuthority.open(home, PASS, audit=AuditLog.at_home(home))
    yield ca  # type: ignore[misc]
    ca.close()


def _rows(ca: CertificateAuthority) -> list[sa.Row]:  # type: ignore[type-arg]
    with ca.engine.connect() as conn:
        return list(conn.execute(sa.select(CertificateRecord).where(
            CertificateRecord.issuer_id == ca.database_id)))


def test_hierarchy_chain_and_issuance_round_trip(authority: CertificateAuthority) -> None:
    chain = authority.chain()
    assert len(chain) == 2 and chain[0].ca and chain[1].self_signed == "maybe"
    verify_certificate_signature(chain[0], chain[1])
    key = SoftwareKey.generate("sm2")
    csr = CsrBuilder().subject(parse_name(HOLDER)).sign(key)
    issued = authority.issue_from_csr(csr.dump(), "cardholder-sign")
    cert = issued.certificate
    verify_certificate_signature(cert, chain[0])
    assert cert.serial_number == issued.serial and issued.serial.bit_length() == 159
    assert cert.issuer == chain[0].subject
    exts = {e["extn_id"].native: e for e in cert["tbs_certificate"]["extensions"]}
    assert exts["social_insurance_number"]["extn_value"].parsed.native == SSN
    assert exts["key_usage"]["critical"].native is True
    assert cert.authority_key_identifier == chain[0].key_identifier
    assert cert.crl_distribution_points[0]["distribution_point"].native == [
        "http://127.0.0.1:8080/crl/issuing.crl"]
    # handed out only after commit: a fresh connection sees the row with the same bytes
    engine = make_engine(str(authority.engine.url))
    with engine.connect() as conn:
        der = conn.execute(sa.select(CertificateRecord.der).where(
            CertificateRecord.serial == issued.serial_hex)).scalar_one()
    engine.dispose()
    assert der == issued.der
    assert authority.status(issued.serial).status is Status.GOOD


def test_init_twice_is_refused(tmp_path: Path, authority: CertificateAuthority) -> None:
    with pytest.raises(AlreadyInitialised):
        initialise(authority.home, None, PASS, audit=AuditLog.at_home(authority.home))


def test_revocation_and_its_errors(authority: CertificateAuthority) -> None:
    key = SoftwareKey.generate("ec-p256")
    issued = authority.issue_for_public_key(key.public_key(), HOLDER, "cardholder-encrypt")
    compromised = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    status = authority.revoke(issued.serial, "keyCompromise", compromised)
    assert status.status is Status.REVOKED and status.reason is RevocationReason.keyCompromise
    seen = authority.status(issued.serial)
    assert seen.status is Status.REVOKED and seen.reason is RevocationReason.keyCompromise
    assert seen.invalidity_date == compromised.replace(microsecond=0)
    with pytest.raises(AlreadyRevoked, match=f"{issued.serial_hex} of CA issuing is already"):
        authority.revoke(issued.serial, "superseded")
    with pytest.raises(UnknownCertificate, match="was never issued by CA issuing"):
        authority.revoke(0xDEADBEEF, "keyCompromise")
    assert authority.status(0xDEADBEEF).status is Status.UNKNOWN
    other = authority.issue_for_public_key(key.public_key(), HOLDER, "cardholder-sign")
    with pytest.raises(CAError, match="unknown revocation reason 'lost'"):
        authority.revoke(other.serial, "lost")
    with pytest.raises(CAError, match="invalidity date cannot be in the future"):
        authority.revoke(other.serial, "keyCompromise",
                         dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    with pytest.raises(CAError, match="removeFromCRL is not a revocation reason"):
        authority.revoke(other.serial, "removeFromCRL")
    # the refused attempts changed nothing
    assert authority.status(other.serial).status is Status.GOOD


def test_full_and_delta_crls(authority: CertificateAuthority) -> None:
    key = SoftwareKey.generate("sm2")
    a, b, c = (authority.issue_for_public_key(key.public_key(), HOLDER, "cardholder-sign")
               for _ in range(3))
    with pytest.raises(CAError, match="no full CRL yet"):
        authority.build_crl(delta=True)
    authority.revoke(a.serial, "keyCompromise")
    full = authority.build_crl()
    verify_crl_signature(full, authority.certificate)
    tbs = full["tbs_cert_list"]
    exts = {e["extn_id"].native: e for e in tbs["crl_extensions"]}
    assert exts["crl_number"]["extn_value"].native == 1
    assert "delta_crl_indicator" not in exts
    assert exts["authority_key_identifier"]["extn_value"].native["key_identifier"] == \
        authority.certificate.key_identifier
    idp = exts["issuing_distribution_point"]
    assert idp["critical"].native and idp["extn_value"].native["distribution_point"] == [
        "http://127.0.0.1:8080/crl/issuing.crl"]
    assert tbs["next_update"].native > tbs["this_update"].native
    assert [r["user_certificate"].native for r in tbs["revoked_certificates"]] == [a.serial]

    # a delta built later lists what was revoked since its base, and points at the base
    authority.revoke(b.serial, "cessationOfOperation",
                     dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    delta = authority.build_crl(delta=True)
    dtbs = delta["tbs_cert_list"]
    dexts = {e["extn_id"].native: e for e in dtbs["crl_extensions"]}
    assert dexts["crl_number"]["extn_value"].native == 2
    assert dexts["delta_crl_indicator"]["critical"].native is True
    assert dexts["delta_crl_indicator"]["extn_value"].native == 1
    entries = {r["user_certificate"].native: r for r in dtbs["revoked_certificates"]}
    assert b.serial in entries and c.serial not in entries
    entry_exts = {e["extn_id"].native: e["extn_value"].native
                  for e in entries[b.serial]["crl_entry_extensions"]}
    assert entry_exts["crl_reason"] == "cessation_of_operation"
    assert "invalidity_date" in entry_exts
    # CRL numbers are shared by full and delta CRLs and only go up
    third = authority.build_crl()
    numbers = [n for (n,) in authority.engine.connect().execute(
        sa.select(CRLRecord.number).order_by(CRLRecord.id))]
    assert numbers == [1, 2, 3]
    assert {r["user_certificate"].native for r in third["tbs_cert_list"]
            ["revoked_certificates"]} == {a.serial, b.serial}
    assert authority.latest_crl_der() == third.dump()
    assert authority.latest_crl_der(delta=True) == delta.dump()


def test_scheduled_refresh_builds_only_when_due(authority: CertificateAuthority) -> None:
    now = dt.datetime.now(dt.UTC)
    built = authority.refresh_crls(now)
    assert len(built) == 2  # a first full CRL and its delta
    assert authority.refresh_crls(now + dt.timedelta(minutes=10)) == []
    later = authority.refresh_crls(now + dt.timedelta(minutes=40))  # delta past half of 1 h
    assert len(later) == 1
    assert asn1crl.CertificateList.load(later[0]).delta_crl_indicator_value is not None


def test_batch_issues_in_chunks_and_stops_at_a_refusal(authority: CertificateAuthority) -> None:
    keys = [SoftwareKey.generate("sm2") for _ in range(5)]
    reqs = [IssueRequest(public_key=k.public_key(), subject=HOLDER) for k in keys]
    csr = CsrBuilder().subject(parse_name(HOLDER)).sign(keys[0])
    reqs.append(IssueRequest(csr=csr.dump()))
    issued = authority.issue_batch(reqs, "cardholder-sign", chunk_size=4)
    assert len(issued) == 6 and len({i.serial for i in issued}) == 6
    assert len(_rows(authority)) == 6
    bad = [IssueRequest(public_key=keys[0].public_key(), subject=HOLDER),
           IssueRequest(public_key=keys[1].public_key(), subject="CN=no ssn")]
    with pytest.raises(RequestRefused, match="batch entry 1"):
        authority.issue_batch(bad, "cardholder-sign", chunk_size=10)
    assert len(_rows(authority)) == 6  # nothing of the refused chunk was stored


def test_serial_collision_is_retried_with_a_new_serial(authority: CertificateAuthority) -> None:
    key = SoftwareKey.generate("sm2")
    first = authority.issue_for_public_key(key.public_key(), HOLDER, "cardholder-sign")
    draws = iter([first.serial, first.serial + 1])
    authority.serial_source = lambda: next(draws)
    second = authority.issue_for_public_key(key.public_key(), HOLDER, "cardholder-sign")
    assert second.serial == first.serial + 1
    assert second.certificate.serial_number == second.serial
    authority.serial_source = lambda: first.serial
    with pytest.raises(StorageError, match="collided"):
        authority.issue_for_public_key(key.public_key(), HOLDER, "cardholder-sign")
    assert len(_rows(authority)) == 2


def test_service_signers_are_made_once(authority: CertificateAuthority) -> None:
    ocsp = authority.ocsp_signer()
    exts = {e["extn_id"].native: e for e in ocsp.certificate["tbs_certificate"]["extensions"]}
    assert "ocsp_no_check" in exts
    assert exts["extended_key_usage"]["extn_value"].native == ["ocsp_signing"]
    assert authority.ocsp_signer().certificate.dump() == ocsp.certificate.dump()
    tsa = authority.tsa_signer().certificate
    teku = next(e for e in tsa["tbs_certificate"]["extensions"]
                if e["extn_id"].native == "extended_key_usage")
    assert teku["critical"].native is True and teku["extn_value"].native == ["time_stamping"]


# -- concurrency: 8 processes, one database --------------------------------------------------

WORKERS = 8
PER_WORKER = 15


def _issue_many(home: str, barrier: object, out: object) -> None:
    ca = CertificateAuthority.open(home, PASS, audit=AuditLog.at_home(home))
    key = SoftwareKey.generate("sm2")
    barrier.wait()  # type: ignore[attr-defined]
    serials = [ca.issue_for_public_key(key.public_key(), HOLDER, "cardholder-sign").serial
               for _ in range(PER_WORKER)]
    ca.close()
    out.put(serials)  # type: ignore[attr-defined]


def test_eight_processes_issue_at_once_without_duplicates_or_loss(
        authority: CertificateAuthority) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WORKERS)
    out = ctx.Queue()
    procs = [ctx.Process(target=_issue_many, args=(str(authority.home), barrier, out))
             for _ in range(WORKERS)]
    for p in procs:
        p.start()
    returned: list[int] = []
    for _ in procs:
        returned.extend(out.get(timeout=120))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    rows = _rows(authority)
    assert len(returned) == WORKERS * PER_WORKER
    assert len(set(returned)) == len(returned)  # no duplicate handed out
    stored = {int(r.serial, 16): r for r in rows}
    assert len(stored) == len(rows) == len(returned)  # none lost, none extra
    assert set(stored) == set(returned)
    issuer = authority.certificate
    for row in rows[:: max(1, len(rows) // 10)]:
        verify_certificate_signature(x509.Certificate.load(row.der), issuer)


def test_a_held_certificate_can_be_revoked_for_good(authority: CertificateAuthority) -> None:
    key = SoftwareKey.generate("sm2")
    issued = authority.issue_for_public_key(key.public_key(), HOLDER, "cardholder-sign")
    held = authority.revoke(issued.serial, "certificateHold")
    with pytest.raises(AlreadyRevoked, match="reason certificateHold"):
        authority.revoke(issued.serial, "certificateHold")
    final = authority.revoke(issued.serial, "keyCompromise")
    assert final.reason is RevocationReason.keyCompromise
    assert final.revocation_time == held.revocation_time  # the date of the hold stays
    seen = authority.status(issued.serial)
    assert seen.reason is RevocationReason.keyCompromise
    with pytest.raises(AlreadyRevoked, match="reason keyCompromise"):
        authority.revoke(issued.serial, "superseded")
