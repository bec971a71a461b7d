"""Disaster recovery: the CA issues into the primary PostgreSQL, a streaming standby made with
scripts/pg-standby.sh follows synchronously, the primary site is lost (immediate shutdown), the
standby is promoted, and the CA opened on the standby issues and answers OCSP with every
certificate it ever handed out still there, revocations included."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import core, ocsp

from ca.authority import CertificateAuthority, IssueRequest
from ca.config import default_config_text
from ca.ocsp import respond
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey
from tests.ops.conftest import holder
from tests.ops.standby import TwoSites
from tests.pg import require_postgres


@pytest.fixture
def sites() -> Iterator[TwoSites]:
    require_postgres()
    two = TwoSites()
    try:
        two.start_primary()
        yield two
    finally:
        two.stop()


def ca_config(path: Path, url: str) -> Path:
    path.write_text(default_config_text(database_url=url))
    return path


def db_serials(ca: CertificateAuthority) -> dict[int, str]:
    return {s.serial: s.status.value for s, _p, _subj in ca.list_certificates(limit=1_000_000)}


def ocsp_status(ca: CertificateAuthority, serial: int) -> str:
    issuer = ca.certificate
    request = ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": {
        "hash_algorithm": {"algorithm": "sha1"},
        "issuer_name_hash": hashlib.sha1(issuer.subject.dump()).digest(),
        "issuer_key_hash": hashlib.sha1(
            issuer.public_key["public_key"].contents[1:]).digest(),
        "serial_number": serial}}],
        "request_extensions": [{"extn_id": "nonce", "extn_value": core.OctetString(b"n" * 16)}]}})
    signer = ca.ocsp_signer()
    der = respond(request.dump(), ca.status, signer.key, signer.certificate, issuer,
                  dt.datetime.now(dt.UTC))
    response = ocsp.OCSPResponse.load(der)
    assert response["response_status"].native == "successful"
    single = response["response_bytes"]["response"].parsed["tbs_response_data"]["responses"][0]
    return str(single["cert_status"].name)


def test_promoted_standby_serves_the_ca_with_no_certificate_lost(sites: TwoSites,
                                                                 tmp_path: Path) -> None:
    sites.primary.sql("CREATE DATABASE ca_dr")
    home = tmp_path / "ca-home"
    key = SoftwareKey.generate("sm2").public_key()
    handed: dict[int, str] = {}
    with CertificateAuthority.init(home, ca_config(tmp_path / "ca.toml",
                                                   sites.primary.url("ca_dr")),
                                                       audit=AuditLog.at_home(home)) as ca:
        ca.ocsp_signer()  # the responder key and certificate exist before the failover
        for c in ca.issue_batch([IssueRequest(public_key=key, subject=holder(i))
                                 for i in range(40)], "cardholder-sign", chunk_size=10):
            handed[c.serial] = "good"
        first = list(handed)
        ca.revoke(first[0], "keyCompromise")
        handed[first[0]] = "revoked"

        sites.create_standby()
        sites.make_synchronous()
        assert sites.standby.sql("SELECT pg_is_in_recovery()") == [(True,)]

        # after the standby exists: more issuance and revocations, right up to the loss
        for c in ca.issue_batch([IssueRequest(public_key=key, subject=holder(i))
                                 for i in range(40, 100)], "cardholder-sign", chunk_size=10):
            handed[c.serial] = "good"
        for serial in list(handed)[45:48]:
            ca.revoke(serial, "cessationOfOperation")
            handed[serial] = "revoked"
        last = ca.issue_for_public_key(key, holder(100), "cardholder-sign")
        handed[last.serial] = "good"
        ca.engine.dispose()
        sites.lose_primary()  # no waiting for the standby to "catch up": it is synchronous

    # the standby refuses writes until promoted
    with pytest.raises(Exception, match="read-only"):
        sites.standby.sql("CREATE TABLE t (x int)", "ca_dr")
    sites.promote()
    assert sites.standby.sql("SELECT pg_is_in_recovery()") == [(False,)]

    with CertificateAuthority.open(home, database_url=sites.standby.url("ca_dr"),
                                   audit=AuditLog.at_home(home)) as ca:
        found = db_serials(ca)
        lost = sorted(set(handed) - set(found))
        assert not lost, f"{len(lost)} certificate(s) lost in the failover"
        assert {s: found[s] for s in handed} == handed
        new = ca.issue_for_public_key(key, holder(101), "cardholder-sign")
        assert ocsp_status(ca, new.serial) == "good"
        assert ocsp_status(ca, last.serial) == "good"
        assert ocsp_status(ca, first[0]) == "revoked"
        assert ocsp_status(ca, list(handed)[46]) == "revoked"
        assert ocsp_status(ca, 12345) == "unknown"
        ca.revoke(new.serial, "superseded")
        crl = ca.build_crl()
        revoked = crl["tbs_cert_list"]["revoked_certificates"]
        listed = {r["user_certificate"].native for r in revoked}
        assert listed == {s for s, st in handed.items() if st == "revoked"} | {new.serial}
