"""The KMC as the embedded RA reaches it in one process: an adapter that meets
``ra.ports.KmcPort`` (structurally; ``keymgmt`` does not import ``ra``) over the KMC as the RA's
own principal (it binds the encryption certificates of the keys it escrowed itself: the RA holds
no CA credential at the KMC). Composition roots (``sscard ra serve``,
scripts/allinone.py, the test rigs) wire it."""

from __future__ import annotations

from pathlib import Path

from keymgmt import ceremony
from keymgmt.ceremony import read_share_files as read_share_files  # for the composition roots
from keymgmt.errors import Conflict
from keymgmt.records import EscrowResult, RecoveryResult
from keymgmt.service import CardRecipient, KeyManagementCentre, Principal, Role
from keymgmt.shares import Share
from sscard.audit.log import AuditLog
from sscard.x509.values import Serial


class InProcessKmc:
    """``ra.ports.KmcPort`` over a KMC in this process: escrow, certificate binding and
    recovery as the RA's principal, approvals as the approving officer."""

    def __init__(self, kmc: KeyManagementCentre, ra: Principal) -> None:
        self.kmc, self.ra = kmc, ra
        self._officers: set[str] = set()

    def escrow(self, owner: str, recipient_spki: bytes,
               request_id: str | None = None) -> EscrowResult:
        return self.kmc.escrow(self.ra, owner, recipient_spki, request_id=request_id)

    def attach_certificate(self, key_id: str, certificate_der: bytes) -> None:
        self.kmc.attach_certificate(self.ra, key_id, certificate_der)

    def request_recovery(self, certificate_serial: Serial, recipient_spki: bytes,
                         reason: str) -> str:
        out = self.kmc.request_recovery(self.ra, certificate_serial=int(certificate_serial),
                                        recipient=CardRecipient(recipient_spki), reason=reason)
        return str(out["request_id"])

    def approve_recovery(self, request_id: str, officer: str, comment: str) -> None:
        self.kmc.approve(self._officer(officer), request_id, comment=comment)

    def complete_recovery(self, request_id: str) -> RecoveryResult:
        return self.kmc.complete_recovery(self.ra, request_id)

    def close(self) -> None:
        self.kmc.close()

    def _officer(self, name: str) -> Principal:
        """The KMC principal of an RA officer (registered with the KMC on first use)."""
        if name not in self._officers:
            try:
                self.kmc.add_caller(name, Role.OFFICER, by=self.ra.name)
            except Conflict:
                pass
            self._officers.add(name)
        return Principal(name, Role.OFFICER)


def open_ra_port(url: str, home: Path, given: list[Share], api_key: str,
                 audit: AuditLog, actor: str = "ra-service") -> InProcessKmc:
    """Unseal the KMC of ``home`` from custodian shares and open it for an RA in the same
    process, as the RA's caller of ``api_key``."""
    kmc = KeyManagementCentre.open(url, ceremony.unseal(home, given, actor=actor, audit=audit),
                                   audit=audit)
    return InProcessKmc(kmc, kmc.authenticate(api_key))
