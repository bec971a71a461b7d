"""The KMC reads the time from the clock it is given (event and record times)."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

from keymgmt.service import KeyManagementCentre, Role
from keymgmt.storage import SoftwareStorageKey
from sscard.audit import AuditLog
from sscard.crypto.sm2 import SM2PrivateKey


def test_kmc_times_come_from_the_injected_clock(tmp_path: Path) -> None:
    when = dt.datetime(2027, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    url = f"sqlite:///{tmp_path / 'kmc.db'}"
    audit = AuditLog.open(url)
    kmc = KeyManagementCentre.open(url, SoftwareStorageKey(secrets.token_bytes(32), "sk"),
                                   audit=audit, clock=lambda: when)
    try:
        ca = kmc.authenticate(kmc.add_caller("ca", Role.CA))
        auditor = kmc.authenticate(kmc.add_caller("aud", Role.AUDITOR))
        kmc.escrow(ca, "owner-1", SM2PrivateKey.generate().public_key().spki_der())
        events = kmc.events(auditor)
        assert events and {e["at"] for e in events} == {when.isoformat()}
    finally:
        kmc.close()
        audit.engine.dispose()
