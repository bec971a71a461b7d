"""The RA reads the time from its injected clock (issue 11 item 6): lock-outs lapse, sessions
go idle, batches expire and a dead executor's claim lapses when a ``FakeClock`` is advanced,
with no sleeping and no rewriting of stored times."""

from __future__ import annotations

import datetime as dt
import re
import secrets

import pytest

from ca.records import IssuedCertificate
from ra.errors import AuthenticationFailed, Forbidden
from ra.ports import CaPort
from ra.service import CardInput, RegistrationAuthority
from sscard.clock import FakeClock
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from tests.issuance.cards import holder
from tests.ra.rig import PASSWORD, RaRig


def _at(rig: RaRig, clock: FakeClock, ca: CaPort | None = None) -> RegistrationAuthority:
    """The rig's RA (same database, CA, KMC) reading the time from ``clock``."""
    return RegistrationAuthority(rig.ra.engine, rig.audit, ca or rig.ra.ca, rig.ra.kmc,
                                 rig.ra.config, clock=clock)


def test_a_lock_out_lapses_when_the_clock_moves_on(rig: RaRig) -> None:
    clock = FakeClock()
    ra = _at(rig, clock)
    source = f"198.51.100.{secrets.randbelow(250)}"
    for _ in range(ra.config.max_failed_logins):
        with pytest.raises(AuthenticationFailed):
            ra.authenticate("officer1", "wrong guess", source)
    with pytest.raises(AuthenticationFailed):
        ra.authenticate("officer1", PASSWORD, source)  # locked out, even with the password
    clock.advance(ra.config.lockout - dt.timedelta(seconds=1))
    with pytest.raises(AuthenticationFailed):
        ra.authenticate("officer1", PASSWORD, source)
    clock.advance(seconds=2)
    assert ra.authenticate("officer1", PASSWORD, source).name == "officer1"


def test_a_session_ends_after_its_idle_time(rig: RaRig) -> None:
    clock = FakeClock()
    ra = _at(rig, clock)
    token = secrets.token_urlsafe(24)
    ra.session_save(token, "officer1", {"lang": "zh"})
    clock.advance(ra.config.session_idle - dt.timedelta(seconds=1))
    assert ra.session_load(token) == ("officer1", {"lang": "zh"})  # touched: idle again from now
    clock.advance(ra.config.session_idle + dt.timedelta(seconds=1))
    assert ra.session_load(token) is None


def _enrollment(rig: RaRig, ra: RegistrationAuthority, batch: str | None = None) -> str:
    who = holder(secrets.randbelow(10**6))
    key = SoftwareKey.generate("sm2")
    csr = CsrBuilder().subject(parse_name(
        f"CN={who.name},serialNumber={who.ssn},C=CN")).sign(key).dump()
    card = CardInput(secrets.token_hex(16).upper(), f"K{secrets.randbelow(10**8):08d}")
    return str(ra.submit_enrollment(rig.client, who, card, csr, batch=batch)["request_id"])


def test_a_batch_expires_when_the_clock_passes_it(rig: RaRig) -> None:
    clock = FakeClock()
    ra = _at(rig, clock)
    name = f"school-{secrets.token_hex(3)}"
    ra.authorise_batch(rig.actor("officer1"), name, 5, station="station-1",
                       valid_for=dt.timedelta(hours=2))
    clock.advance(hours=1)
    assert ra.request(rig.client, _enrollment(rig, ra, name))["state"] == "done"
    clock.advance(hours=1, seconds=1)
    with pytest.raises(Forbidden, match="expired"):
        _enrollment(rig, ra, name)


class DiesMidIssuance:
    """The RA's CA port, in a process that dies during the first issuance it asks for (the
    exception escapes everything, as the process's end would): its claim stays behind."""

    def __init__(self, inner: CaPort) -> None:
        self.inner, self.died = inner, False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def issue_from_csr(self, csr_der: bytes, profile: str,
                       request_id: str | None = None) -> IssuedCertificate:
        if not self.died:
            self.died = True
            raise KeyboardInterrupt("the RA process died here")
        return self.inner.issue_from_csr(csr_der, profile, request_id)


def test_a_dead_executors_claim_lapses_and_the_request_is_carried_on(rig: RaRig) -> None:
    clock = FakeClock()
    assert rig.ra.ca is not None
    dying = _at(rig, clock, DiesMidIssuance(rig.ra.ca))  # type: ignore[arg-type]
    rid = _enrollment(rig, dying)
    with pytest.raises(KeyboardInterrupt):
        dying.approve(rig.actor("officer1"), rid, "ok")
    ra = _at(rig, clock)  # another worker
    # the claim is fresh: another round leaves the request to its (dead) executor
    assert rid not in {r["request_id"] for r in ra.resume_waiting()}
    clock.advance(ra.config.resume_after + dt.timedelta(seconds=1))
    resumed = {r["request_id"]: r["state"] for r in ra.resume_waiting()}
    assert resumed[rid] == "done"
    assert re.fullmatch(r"[0-9A-F]+", str(ra.request(rig.client, rid)["certificate_serial"]))
