"""The RA reaching the CA over the CA API (``ca.client.CaClient`` as its ``CaPort``), the CA
served by ``sscard ca serve`` (gunicorn) in its own process, the RA signing every request with
its service certificate (issue 11 items 1 and 2): enrollment, approval, issuance, revocation;
and the CA stopped in the middle of an issuance: the request stays approved with a clear error,
is carried on when resubmitted, and nothing is issued twice."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from ca.authorization import ApiOperation, AuthorizedAuthority
from ca.client import CaClient
from ca.errors import (
    AlreadyRevoked,
    CaUnavailable,
    NotPermitted,
    RequestRefused,
    UnknownCertificate,
)
from ca.ports_inprocess import InProcessCa
from ca.records import IssuedCertificate, Status
from keymgmt.client import KmcClient
from keymgmt.ports_inprocess import InProcessKmc
from keymgmt.records import EscrowResult
from keymgmt.service import Principal
from keymgmt.web import create_app as create_kmc_app
from ra.errors import UpstreamUnavailable
from ra.kmc_http import HttpKmc
from ra.ports import CaPort, KmcPort
from ra.service import CardInput, RegistrationAuthority
from sscard.audit.records import StoredRecord
from sscard.card.records import HolderData
from sscard.crypto.envelopes import EnvelopedKey, unwrap
from sscard.crypto.sm2 import SM2PrivateKey
from sscard.httpsig import RequestSigner
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem
from sscard.x509.values import RevocationReason, Serial
from tests.ca.test_service_cli import SSCARD, free_port, sscard
from tests.issuance.cards import holder
from tests.ra.rig import RaRig, make_rig
from tests.replay_attacks import gunicorn

PASSPHRASE = b"ca test passphrase"  # tests/ra/rig.py make_ca


@dataclasses.dataclass
class Served:
    rig: RaRig
    url: str
    log: Path
    command: list[str]
    signer: RequestSigner

    def ca(self) -> AbstractContextManager[subprocess.Popen[bytes]]:
        return gunicorn(self.command, {}, self.url, self.log, health="/ready")

    def ra(self, kmc: KmcPort | None = None) -> RegistrationAuthority:
        """The rig's RA (same database and audit log) holding the CA through its HTTP client."""
        return RegistrationAuthority(self.rig.ra.engine, self.rig.audit,
                                     CaClient(self.url, signer=self.signer, timeout=10),
                                     kmc or self.rig.ra.kmc, self.rig.ra.config)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("ra-http")
    rig = make_rig(base)
    home = base / "ca-home"
    # the RA's service identity: a certificate of profile service, registered at the CA as the
    # principal ra (cardholder and business-system profiles only)
    key = SoftwareKey.generate("sm2")
    cert = rig.ca.issue_from_csr(
        CsrBuilder().subject(parse_name("CN=ra-service,C=CN")).sign(key).dump(), "service")
    (base / "ra.pem").write_bytes(der_to_pem(cert.der, "CERTIFICATE"))
    sscard(home, "ca", "principal", "add", "ra", "--ra", "--certificate", str(base / "ra.pem"))
    (base / "passphrase").write_bytes(PASSPHRASE)
    (base / "passphrase").chmod(0o600)
    port = free_port()
    yield Served(rig, f"http://127.0.0.1:{port}", base / "ca-serve.log",
                 [SSCARD, "--home", str(home), "ca", "serve", "--port", str(port),
                  "--workers", "1", "--threads", "2", "--no-tsa",
                  "--passphrase-file", str(base / "passphrase")],
                 RequestSigner(key, cert.der))
    rig.close()


def enrollment(served: Served, ra: RegistrationAuthority
               ) -> tuple[dict[str, object], HolderData, CardInput, bytes]:
    who = holder(secrets.randbelow(10**6))
    key = SoftwareKey.generate("sm2")
    csr = CsrBuilder().subject(parse_name(f"CN={who.name},serialNumber={who.ssn},C=CN")).sign(key)
    card = CardInput(secrets.token_hex(16).upper(), f"H{secrets.randbelow(10**8):08d}")
    info = ra.submit_enrollment(served.rig.client, who, card, csr.dump())
    return info, who, card, csr.dump()


def test_enroll_approve_issue_revoke_over_http(served: Served) -> None:
    rig = served.rig
    with served.ca():
        ra = served.ra()
        info, _, _, _ = enrollment(served, ra)
        rid = str(info["request_id"])
        done = ra.approve(rig.actor("officer1"), rid, "ok")  # one approval (default policy)
        assert done["state"] == "done", done
        sign = Serial.parse(str(done["certificate_serial"]))
        # issued by the served CA, under the RA's service identity
        assert rig.ca.status(sign).status == Status.GOOD
        client = CaClient(served.url, signer=served.signer, timeout=10)
        assert client.status(sign) == Status.GOOD
        assert len(client.chain()) == 2
        # revocation through the RA, carried out over HTTP
        rev = ra.submit_revocation(rig.actor("operator"), serial=sign.hex,
                                   reason="keyCompromise", comment="lost card")
        ra.approve(rig.actor("officer1"), str(rev["request_id"]), "ok")
        assert ra.approve(rig.actor("officer2"), str(rev["request_id"]), "ok")["state"] == "done"
        assert rig.ca.status(sign).status == Status.REVOKED
        # the CA's answers come back as the CA's own errors
        with pytest.raises(AlreadyRevoked):
            client.revoke(sign, RevocationReason.keyCompromise)
        with pytest.raises(UnknownCertificate):
            client.revoke(Serial(0x7FFFFFFF01), RevocationReason.keyCompromise)
        # the RA's credential may not issue CA-level profiles
        key = SoftwareKey.generate("sm2")
        csr = CsrBuilder().subject(parse_name("CN=rogue sub CA,C=CN")).sign(key).dump()
        with pytest.raises(NotPermitted):
            client.issue_from_csr(csr, "sub-ca")
        with pytest.raises(NotPermitted):
            client.issue_for_public_key(key.public_key().spki_der(), "CN=rogue,C=CN", "sub-ca")
        # a key that is not a SubjectPublicKeyInfo: refused, named, nothing issued
        with pytest.raises(RequestRefused, match="not a SubjectPublicKeyInfo"):
            client.issue_for_public_key(b"not a key", "CN=x,C=CN", "cardholder-encrypt")
        # both a CSR and a key, or neither: refused
        for body in ({"profile": "business-system", "csr": "x", "public_key": "eA==",
                      "subject": "CN=x"}, {"profile": "business-system"}):
            raw = json.dumps(body).encode()
            answer = requests.post(served.url + "/api/v1/certificates", data=raw, timeout=10,
                                   headers={"Content-Type": "application/json",
                                            **served.signer.headers("POST", "/api/v1/certificates",
                                                                    "", raw)})
            assert (answer.status_code, answer.json()["code"]) == (400, "bad_request")


class StopsTheCa(InProcessKmc):
    """The real KMC; the moment the RA asks it to escrow, the CA's process is stopped (the CA
    goes down between the signing and the encryption certificate)."""

    def __init__(self, inner: InProcessKmc, stop: AbstractContextManager[object]) -> None:
        super().__init__(inner.kmc, inner.ra)
        self.stop: AbstractContextManager[object] | None = stop

    def escrow(self, owner: str, recipient_spki: bytes,
               request_id: str | None = None) -> EscrowResult:
        if self.stop is not None:
            self.stop.__exit__(None, None, None)
            self.stop = None
        return super().escrow(owner, recipient_spki, request_id)


def test_ca_down_mid_issuance_waits_and_resumes(served: Served) -> None:
    rig = served.rig
    assert isinstance(rig.ra.kmc, InProcessKmc)
    running = served.ca()
    running.__enter__()
    ra = served.ra(StopsTheCa(rig.ra.kmc, running))
    info, who, card, csr = enrollment(served, ra)
    rid = str(info["request_id"])
    with pytest.raises(UpstreamUnavailable, match="waiting for the CA"):
        ra.approve(rig.actor("officer1"), rid, "ok")
    waiting = ra.request(rig.client, rid)
    # still approved (not failed, nothing rolled back), and it says why it waits
    assert waiting["state"] == "approved" and "waiting for the CA" in str(waiting["error"])
    sign = Serial.parse(str(waiting["certificate_serial"]))
    assert rig.ca.status(sign).status == Status.GOOD
    # the CA is back; the station submits the same enrollment again: carried on, not redone
    with served.ca():
        again = served.ra().submit_enrollment(rig.client, who, card, csr)
    assert again["state"] == "done", again
    assert again["certificate_serial"] == waiting["certificate_serial"]  # one signing cert
    with rig.ra._tx() as s:
        details = rig.ra._details(rig.ra._request(s, rid))
    assert {"sign_serial", "enc_serial", "escrow_key_id"} <= set(details)
    assert rig.ca.status(Serial.parse(details["enc_serial"])).status == Status.GOOD
    kmc = rig.ra.kmc
    assert len(kmc.kmc.find_keys(kmc.ra, owner=who.ssn)) == 1  # escrowed once



@contextmanager
def kmc_served(served: Served, port: int) -> Iterator[str]:
    """The rig's KMC behind its HTTP API (keymgmt.web) on ``port``, until the block ends."""
    server = make_server("127.0.0.1", port, create_kmc_app(served.rig.kmc), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def http_kmc(served: Served, url: str) -> HttpKmc:
    """The RA's KMC port over HTTP: its own caller (also for the certificate binding of its own
    escrows), and each officer's own caller for approvals (the KMC sees who approves)."""
    kmc = served.rig.kmc
    ra_key = kmc.add_caller(f"ra-{secrets.token_hex(3)}", "ra")
    officers: dict[str, KmcClient] = {}

    def officer(name: str) -> KmcClient:
        if name not in officers:
            officers[name] = KmcClient(url, kmc.add_caller(name, "officer"), timeout=10)
        return officers[name]

    return HttpKmc(KmcClient(url, ra_key, timeout=10), officer)


def test_ca_and_kmc_over_http_enroll_and_recover(served: Served) -> None:
    """Both upstreams over their APIs: escrow and the encryption certificate's binding through
    the KMC API, a key recovery approved by two officers whom the KMC itself sees; the KMC
    stopped before the escrow: the request waits for the KMC and is carried on."""
    rig = served.rig
    port = free_port()
    with served.ca():
        with kmc_served(served, port) as url:
            kmc = http_kmc(served, url)
            ra = served.ra(kmc)
            info, _, _, _ = enrollment(served, ra)
            done = ra.approve(rig.actor("officer1"), str(info["request_id"]), "ok")
            assert done["state"] == "done", done
            enc_serial = str(done["card"]["enc_serial"])  # type: ignore[index]
            bound = rig.kmc.find_keys(kmc_principal(rig), certificate_serial=enc_serial)
            assert len(bound) == 1  # the RA's own caller bound the certificate over HTTP
            new_card = SM2PrivateKey.generate()
            req = ra.submit_key_recovery(rig.actor("operator"), enc_serial,
                                         new_card.public_key().spki_der(), "card lost")
            ra.approve(rig.actor("officer1"), str(req["request_id"]))
            recovered = ra.approve(rig.actor("officer2"), str(req["request_id"]))
            assert recovered["state"] == "done", recovered
            assert unwrap(EnvelopedKey.from_blob(base64.b64decode(str(
                recovered["enveloped_key_blob"]))).to_der(), new_card).public_key().point == \
                EnvelopedKey.from_blob(base64.b64decode(str(
                    done["enveloped_key_blob"]))).public_point
            events = rig.kmc.events(rig.kmc.authenticate(rig.kmc.add_caller(
                f"aud-{secrets.token_hex(3)}", "auditor")), "recovery.approve")
            assert {"officer1", "officer2"} <= {e["actor"] for e in events}
        # the KMC is down (the CA is not): the enrollment waits for the KMC
        info, who, card, csr = enrollment(served, ra)
        rid = str(info["request_id"])
        with pytest.raises(UpstreamUnavailable, match="waiting for the KMC"):
            ra.approve(rig.actor("officer1"), rid, "ok")
        waiting = ra.request(rig.client, rid)
        assert waiting["state"] == "approved" and "waiting for the KMC" in str(waiting["error"])
        with kmc_served(served, port):
            again = ra.submit_enrollment(rig.client, who, card, csr)
        assert again["state"] == "done", again
        assert again["certificate_serial"] == waiting["certificate_serial"]  # issued once
        assert len(rig.kmc.find_keys(kmc_principal(rig), owner=who.ssn)) == 1


def kmc_principal(rig: RaRig) -> Principal:
    assert isinstance(rig.ra.kmc, InProcessKmc)
    return rig.ra.kmc.ra


def test_ca_reads_while_the_ca_is_down_are_refused_as_unavailable(served: Served) -> None:
    """A revocation request checks the certificate at the CA first: with the CA out of reach
    it is refused as unavailable (503 upstream_unavailable at the API), not a 500, and nothing
    is recorded; once the CA is back the same request goes in."""
    rig = served.rig
    key = SoftwareKey.generate("sm2")
    who = holder(secrets.randbelow(10**6))
    issued = rig.ca.issue_from_csr(CsrBuilder().subject(parse_name(
        f"CN={who.name},serialNumber={who.ssn},C=CN")).sign(key).dump(), "cardholder-sign")
    ra = served.ra()  # the CA is not running
    with pytest.raises(UpstreamUnavailable, match="the CA cannot be reached now"):
        ra.submit_revocation(rig.actor("operator"), serial=issued.serial_hex, comment="lost")
    with served.ca():
        rev = ra.submit_revocation(rig.actor("operator"), serial=issued.serial_hex,
                                   comment="lost")
    assert rev["state"] == "submitted"


class CountsTheCa:
    """The RA's CA port (``CaClient`` over HTTP), counting what the RA asks of it; with
    ``lose_batch`` the first batch reaches the CA, which issues, but its answer is lost (and
    the CA stays out of reach for the rest of that round)."""

    def __init__(self, inner: CaPort, lose_batch: bool = False) -> None:
        self.inner, self.lose_batch = inner, lose_batch
        self.batches: list[list[str | None]] = []
        self.singles = 0
        self.lost: list[IssuedCertificate | RequestRefused] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def issue_batch(self, entries: Sequence[tuple[bytes, str | None]], profile: str, *,
                    attest: bool = False) -> list[IssuedCertificate | RequestRefused]:
        self.batches.append([rid for _, rid in entries])
        results = self.inner.issue_batch(entries, profile, attest=attest)
        if self.lose_batch and not self.lost:
            self.lost = results
            raise CaUnavailable(0, "unreachable", "the answer was lost")
        return results

    def issue_from_csr(self, csr_der: bytes, profile: str,
                       request_id: str | None = None) -> IssuedCertificate:
        self.singles += 1
        if self.lose_batch and self.lost and self.singles <= len(self.lost):
            raise CaUnavailable(0, "unreachable", "connection refused")
        return self.inner.issue_from_csr(csr_der, profile, request_id)


def waiting_enrollments(served: Served, count: int) -> list[tuple[str, HolderData, bytes]]:
    """``count`` enrollments approved while the CA was down: each waits for the CA."""
    ra = served.ra()
    out = []
    for _ in range(count):
        info, who, _, csr = enrollment(served, ra)
        rid = str(info["request_id"])
        with pytest.raises(UpstreamUnavailable, match="waiting for the CA"):
            ra.approve(served.rig.actor("officer1"), rid, "ok")
        out.append((rid, who, csr))
    return out


def resumed_with(served: Served, ca: CountsTheCa) -> dict[str, dict[str, object]]:
    ra = RegistrationAuthority(served.rig.ra.engine, served.rig.audit, ca,  # type: ignore[arg-type]
                               served.rig.ra.kmc, served.rig.ra.config)
    return {str(r["request_id"]): r for r in ra.resume_waiting()}


def test_waiting_enrollments_are_signed_in_one_batch_over_http(served: Served) -> None:
    """The RA carries on many approved enrollments at once: their signing certificates come
    from the served CA in one signed batch (possession attested by the RA), each under its own
    request id, then each request goes on alone (escrow, encryption certificate)."""
    rig = served.rig
    waiting = waiting_enrollments(served, 3)
    with served.ca():
        ca = CountsTheCa(CaClient(served.url, signer=served.signer, timeout=10))
        resumed = resumed_with(served, ca)
    assert [[f"{rid}.sign" for rid, _, _ in waiting]] == [
        [e for e in batch if e in {f"{rid}.sign" for rid, _, _ in waiting}]
        for batch in ca.batches]
    assert ca.singles == 0  # no certificate of these was asked for alone
    for rid, _, _ in waiting:
        assert resumed[rid]["state"] == "done", resumed[rid]
        info = served.ra().request(rig.client, rid)
        sign = Serial.parse(str(info["certificate_serial"]))
        assert rig.ca.status(sign).status == Status.GOOD
        card = info["card"]
        assert isinstance(card, dict) and card["enc_serial"]
    # the RA's record of the batch names every request; the CA recorded each entry itself
    attempt, outcome = batch_records(rig)[-2:]
    assert {rid for rid, _, _ in waiting} <= set(attempt.record.details["requests"])
    assert outcome.record.outcome == "success"
    assert outcome.record.details["attempt_seq"] == attempt.seq


def batch_records(rig: RaRig) -> list[StoredRecord]:
    """The RA's audit records of its batches (an attempt naming the requests, its outcome)."""
    return [r for r in rig.audit.records(actions=["ra.enrollment.issue"])
            if r.record.object.startswith("batch:")]


def test_a_lost_batch_answer_asked_again_gives_the_same_certificates(served: Served) -> None:
    """The CA issues a batch but its answer never reaches the RA (and the CA is then out of
    reach): every request waits, nothing is failed or rolled back; the next round sends the
    whole batch again and gets the same certificates (the CA's idempotency by request id),
    not a second set."""
    rig = served.rig
    waiting = waiting_enrollments(served, 3)
    with served.ca():
        ca = CountsTheCa(CaClient(served.url, signer=served.signer, timeout=10), lose_batch=True)
        first = resumed_with(served, ca)
        for rid, _, _ in waiting:
            assert first[rid]["state"] == "approved", first[rid]
            assert "waiting for the CA" in str(first[rid]["error"])
        lost = {rid: result for (rid, _, _), result in zip(waiting, ca.lost[-3:], strict=True)}
        assert all(isinstance(r, IssuedCertificate) for r in lost.values())
        again = resumed_with(served, CountsTheCa(CaClient(served.url, signer=served.signer,
                                                          timeout=10)))
    for rid, who, _ in waiting:
        assert again[rid]["state"] == "done", again[rid]
        serial = served.ra().request(rig.client, rid)["certificate_serial"]
        issued = lost[rid]
        assert isinstance(issued, IssuedCertificate)
        assert Serial.parse(str(serial)) == Serial(issued.serial)  # the same certificate
        with rig.ca.engine.connect() as conn:  # and only one signing certificate for the card
            count = conn.execute(sa.text(
                "SELECT count(*) FROM certificates WHERE subject LIKE :s AND profile = "
                "'cardholder-sign'"), {"s": f"%{who.ssn}%"}).scalar_one()
        assert count == 1


def test_one_refused_entry_fails_its_request_alone(served: Served) -> None:
    """The CA refuses one entry of the batch (its request id was used at the CA for another
    request): that request alone fails and is rolled back, the others are issued."""
    rig = served.rig
    waiting = waiting_enrollments(served, 3)
    bad, who, _ = waiting[1]
    with served.ca():
        client = CaClient(served.url, signer=served.signer, timeout=10)
        other = CsrBuilder().subject(parse_name(f"CN={who.name},serialNumber={who.ssn},C=CN")
                                     ).sign(SoftwareKey.generate("sm2")).dump()
        squatter = client.issue_from_csr(other, "cardholder-sign", request_id=f"{bad}.sign")
        ca = CountsTheCa(client)
        resumed = resumed_with(served, ca)
    assert resumed[bad]["state"] == "failed", resumed[bad]
    assert "used for another request" in str(resumed[bad]["error"])
    for rid, _, _ in (waiting[0], waiting[2]):
        assert resumed[rid]["state"] == "done", resumed[rid]
    info = served.ra().request(rig.client, bad)
    assert info["certificate_serial"] in (None, "")  # nothing issued for the failed request
    assert rig.ca.status(Serial(squatter.serial)).status == Status.GOOD  # not the RA's to touch
    refused = batch_records(rig)[-1].record.details["refused"]
    assert len(refused) == 1 and refused[0].startswith(bad)


def test_the_in_process_port_signs_a_batch_alike(served: Served) -> None:
    """The embedded RA's CA port (``ca.ports_inprocess``, as ``make demo`` wires it) carries
    the same batch through the same port: one call, each request signed and carried on, the
    CA's view authorising it (issue and attest-pop) as the HTTP API does."""
    waiting = waiting_enrollments(served, 2)
    inner = served.rig.ra.ca
    assert isinstance(inner, InProcessCa)
    ca = CountsTheCa(inner)
    resumed = resumed_with(served, ca)
    ids = {f"{rid}.sign" for rid, _, _ in waiting}
    assert [sorted(ids)] == [sorted(set(batch) & ids) for batch in ca.batches]
    assert ca.singles == 0
    for rid, _, _ in waiting:
        assert resumed[rid]["state"] == "done", resumed[rid]
    # a principal without attest-pop may not vouch for possession in process either
    view = inner._view
    narrowed = dataclasses.replace(view.principal, operations=view.principal.operations
                                   - {ApiOperation.ATTEST_POP})
    other = InProcessCa(AuthorizedAuthority(view._authority, narrowed))
    csr = CsrBuilder().subject(parse_name("CN=张三,serialNumber=X1,C=CN")).sign(
        SoftwareKey.generate("sm2")).dump()
    with pytest.raises(NotPermitted, match="attest-pop"):
        other.issue_batch([(csr, None)], "cardholder-sign", attest=True)
