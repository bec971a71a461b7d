"""An officer's card log-in at the RA (``RegistrationAuthority.authenticate_card``, the account
found by its certificate's fingerprint) among many officers with registered certificates,
beside the same log-in at an RA where that officer is the only one, in the same run.

    python bench/ra_card_login.py [--officers N] [--seconds S]

Figure (CPU-time rates: the steadier on a shared machine):

    card log-in, <N> officers with certificates: ours=<n>/s reference=<n>/s ratio=<r>

``ours`` logs in at the RA holding ``--officers`` officers with certificates (default 2000),
``reference`` at one holding only that officer; both on SQLite files with their audit log, no
CA (nothing to ask about revocation). A ratio near 1 means the log-in does not grow with the
number of officers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import figure, rates
from ra import store
from ra.models import Officer, Role
from ra.service import RegistrationAuthority, _x5t_s256
from sscard.audit.log import AuditLog
from sscard.keys.software import SoftwareKey
from tests.validation.chain import Issued, issue_cert, make_ca

PROFILE = "staff-sign"
PERSON = "110101198001010001"


def officers_ra(base: Path, ca: Issued, key: SoftwareKey, count: int
                ) -> tuple[RegistrationAuthority, str]:
    """An RA with ``count`` officers whose certificates are registered (the last one the one
    that logs in, for PERSON), and that officer's certificate fingerprint."""
    base.mkdir()
    ra = RegistrationAuthority.open(store.default_url(base),
                                    AuditLog.open(f"sqlite:///{base / 'audit.db'}"))
    now = datetime.now(UTC)
    with ra._tx() as s:  # rows, not add_officer: an Argon2 hash each would take minutes
        s.add_all(Officer(username=f"o{i}", display_name=f"O{i}", password_hash="-",
                          roles=Role.OFFICER.value, active=True,
                          person_id=PERSON if i == count - 1 else f"{i:018d}", created_at=now)
                  for i in range(count))
    der = b""
    for i in range(count):
        person = PERSON if i == count - 1 else f"{i:018d}"
        der = issue_cert(f"CN=O{i},serialNumber={person},C=CN", key, ca,
                         [("key_usage", {"digital_signature"}, True)],
                         now - timedelta(days=1), now + timedelta(days=365)).dump()
        ra.set_officer_certificate(None, f"o{i}", der)
    return ra, _x5t_s256(der)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--officers", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    ca, key = make_ca("CN=Bench Staff CA,C=CN"), SoftwareKey.generate("sm2")
    profiles = frozenset({PROFILE})
    with tempfile.TemporaryDirectory() as work:
        many, many_fp = officers_ra(Path(work) / "many", ca, key, args.officers)
        one, one_fp = officers_ra(Path(work) / "one", ca, key, 1)
        _, ours = rates(lambda: many.authenticate_card(many_fp, PROFILE, PERSON, profiles),
                        args.seconds)
        _, reference = rates(lambda: one.authenticate_card(one_fp, PROFILE, PERSON, profiles),
                             args.seconds)
        many.close()
        one.close()
    print(figure(f"card log-in, {args.officers} officers with certificates", ours, reference))


if __name__ == "__main__":
    main()
