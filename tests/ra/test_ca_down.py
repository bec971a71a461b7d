"""The CA out of reach (issue 11, "Bad input"): the RA's request stays approved with a clear
status and is carried on without anyone resubmitting it (``resume_waiting``, the served RA's
timer); nothing is issued twice, also when the CA committed a certificate whose answer never
reached the RA (the request's own id makes the CA's issuance idempotent), and nothing is lost.
The CA is a real ``sscard ca serve`` process, stopped and started again, or reached through a
relay that loses one answer."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from ca.client import CaClient
from ca.errors import RequestRefused
from ca.records import Status
from ca.storage import CertificateRecord
from ra.errors import UpstreamUnavailable
from ra.service import RegistrationAuthority
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.values import Serial
from tests.ca.test_service_cli import free_port
from tests.issuance.cards import holder
from tests.ra.test_ca_over_http import (  # noqa: F401  (the served CA fixture)
    Served,
    StopsTheCa,
    enrollment,
    http_kmc,
    kmc_principal,
    kmc_served,
    served,
)


class LosesOneAnswer:
    """A TCP relay to a service. Armed, it passes the next request that starts with ``losing``
    (by default the CA's issuance) on and then closes the caller's connection instead of
    relaying the answer: the service committed, the caller never heard (as when a connection
    breaks after the commit)."""

    def __init__(self, target: int, losing: bytes = b"POST /api/v1/certificates") -> None:
        self.target, self.losing = target, losing
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.armed = threading.Event()
        self.lost: list[bytes] = []  # the answers the caller never got
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                caller, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(caller,), daemon=True).start()

    def _relay(self, caller: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target))
        losing = threading.Event()

        def forward() -> None:
            try:
                while data := caller.recv(65536):
                    if self.armed.is_set() and self.losing in data:
                        self.armed.clear()
                        losing.set()
                    upstream.sendall(data)
            except OSError:
                pass
            finally:
                upstream.close()

        threading.Thread(target=forward, daemon=True).start()
        try:
            while data := upstream.recv(65536):
                if losing.is_set():
                    self.lost.append(data)
                    break
                caller.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (caller, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the other direction's recv
                except OSError:
                    pass
                sock.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def relay(served: Served) -> Iterator[LosesOneAnswer]:  # noqa: F811
    port = int(served.url.rsplit(":", 1)[1])
    lossy = LosesOneAnswer(port)
    yield lossy
    lossy.close()


def _issued_for(served: Served, ssn: str, profile: str) -> int:  # noqa: F811
    with served.rig.ca.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(CertificateRecord).where(
            CertificateRecord.subject.contains(ssn), CertificateRecord.profile == profile)) or 0)


def test_a_lost_answer_issues_nothing_twice(served: Served,  # noqa: F811
                                            relay: LosesOneAnswer) -> None:
    rig = served.rig
    with served.ca():
        ra = RegistrationAuthority(rig.ra.engine, rig.audit,
                                   CaClient(relay.url, signer=served.signer, timeout=10),
                                   rig.ra.kmc, rig.ra.config)
        info, who, _, _ = enrollment(served, ra)
        rid = str(info["request_id"])
        relay.armed.set()
        with pytest.raises(UpstreamUnavailable, match="waiting for the CA"):
            ra.approve(rig.actor("officer1"), rid, "ok")
        assert relay.lost and b" 201 " in relay.lost[0].split(b"\r\n", 1)[0]  # it did issue
        waiting = ra.request(rig.client, rid)
        assert waiting["state"] == "approved" and "waiting for the CA" in str(waiting["error"])
        assert _issued_for(served, who.ssn, "cardholder-sign") == 1
        # carried on by the RA itself: the CA answers the same request id with the same
        # certificate, and the enrollment completes
        assert ra.resume_waiting() == [{"request_id": rid, "state": "done", "error": None}]
    done = ra.request(rig.client, rid)
    assert done["state"] == "done"
    assert _issued_for(served, who.ssn, "cardholder-sign") == 1
    assert _issued_for(served, who.ssn, "cardholder-encrypt") == 1
    assert rig.ca.status(Serial.parse(str(done["certificate_serial"]))).status == Status.GOOD


def test_waiting_requests_resume_once_the_ca_is_back(served: Served) -> None:  # noqa: F811
    """The CA process stops between the signing and the encryption certificate, and a
    revocation is approved while it is down: both wait, say so, and are carried on by
    ``resume_waiting`` (no station resubmits) once the CA runs again."""
    rig = served.rig
    running = served.ca()
    running.__enter__()
    ra = served.ra(StopsTheCa(rig.ra.kmc, running))  # type: ignore[arg-type]
    info, who, _, _ = enrollment(served, ra)
    rid = str(info["request_id"])
    with pytest.raises(UpstreamUnavailable, match="waiting for the CA"):
        ra.approve(rig.actor("officer1"), rid, "ok")
    # a card issued earlier is reported lost while the CA is down
    key = SoftwareKey.generate("sm2")
    lost = holder(secrets.randbelow(10**6))
    issued = rig.ca.issue_from_csr(CsrBuilder().subject(parse_name(
        f"CN={lost.name},serialNumber={lost.ssn},C=CN")).sign(key).dump(), "cardholder-sign")
    with served.ca():
        revocation = str(ra.submit_revocation(rig.actor("operator"), serial=issued.serial_hex,
                                              reason="keyCompromise", comment="lost")
                         ["request_id"])
    ra.approve(rig.actor("officer1"), revocation, "ok")
    with pytest.raises(UpstreamUnavailable, match="waiting for the CA"):
        ra.approve(rig.actor("officer2"), revocation, "ok")
    assert ra.request(rig.actor("officer1"), revocation)["state"] == "approved"
    # still down: a round changes nothing and loses nothing
    still = {r["request_id"]: r for r in ra.resume_waiting()}
    assert {rid, revocation} <= set(still)
    assert all(still[r]["state"] == "approved" and "waiting for the CA" in str(still[r]["error"])
               for r in (rid, revocation))
    with served.ca():
        resumed = {r["request_id"]: r["state"] for r in served.ra().resume_waiting()}
    assert resumed[rid] == "done" and resumed[revocation] == "done"
    assert rig.ca.status(Serial(issued.serial)).status == Status.REVOKED
    assert _issued_for(served, who.ssn, "cardholder-sign") == 1
    assert _issued_for(served, who.ssn, "cardholder-encrypt") == 1
    # and the RA's audit names who carried them on
    actors = {r.record.actor for r in rig.audit.records()
              if r.record.action in ("ra.enrollment.issue", "ra.revocation.execute")}
    assert "service:ra-resume" in actors


def test_the_ca_answers_a_repeated_request_id_with_the_same_certificate(
        served: Served) -> None:  # noqa: F811
    key = SoftwareKey.generate("sm2")
    who = holder(secrets.randbelow(10**6))
    csr = CsrBuilder().subject(parse_name(
        f"CN={who.name},serialNumber={who.ssn},C=CN")).sign(key).dump()
    request_id = f"rq-{secrets.token_hex(8)}.sign"
    with served.ca():
        client = CaClient(served.url, signer=served.signer, timeout=10)
        first = client.issue_from_csr(csr, "cardholder-sign", request_id=request_id)
        again = client.issue_from_csr(csr, "cardholder-sign", request_id=request_id)
        assert (again.serial, again.der) == (first.serial, first.der)
        # the id used for another request: refused, named, nothing issued
        other = CsrBuilder().subject(parse_name(
            f"CN={who.name},serialNumber={who.ssn},C=CN")).sign(
            SoftwareKey.generate("sm2")).dump()
        with pytest.raises(RequestRefused, match="was used for another request"):
            client.issue_from_csr(other, "cardholder-sign", request_id=request_id)
        with pytest.raises(RequestRefused, match="request_id must be"):
            client.issue_from_csr(other, "cardholder-sign", request_id="no spaces / slashes")
        # without an id every call is a new certificate, as before
        assert client.issue_from_csr(csr, "cardholder-sign").serial != first.serial
    assert _issued_for(served, who.ssn, "cardholder-sign") == 2


def test_a_lost_escrow_answer_escrows_once(served: Served) -> None:  # noqa: F811
    """The KMC escrowed, its answer was lost: carried on, the RA gets the same key (named by
    its request id), the card's envelope and the certificate are of that key, and the KMC
    holds one key for the cardholder."""
    rig = served.rig
    port = free_port()
    with served.ca(), kmc_served(served, port):
        relay = LosesOneAnswer(port, b"POST /kmc/v1/escrow")
        try:
            ra = served.ra(http_kmc(served, relay.url))
            info, who, _, _ = enrollment(served, ra)
            rid = str(info["request_id"])
            relay.armed.set()
            with pytest.raises(UpstreamUnavailable, match="waiting for the KMC"):
                ra.approve(rig.actor("officer1"), rid, "ok")
            assert relay.lost and b" 201 " in relay.lost[0].split(b"\r\n", 1)[0]
            assert len(rig.kmc.find_keys(kmc_principal(rig), owner=who.ssn)) == 1
            assert ra.resume_waiting() == [{"request_id": rid, "state": "done", "error": None}]
        finally:
            relay.close()
    keys = rig.kmc.find_keys(kmc_principal(rig), owner=who.ssn)
    assert len(keys) == 1  # escrowed once
    done = ra.request(rig.client, rid)
    assert keys[0]["certificate_serial"] == done["card"]["enc_serial"]  # type: ignore[index]
