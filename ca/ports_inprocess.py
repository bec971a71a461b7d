"""The CA as the embedded RA reaches it in one process: an adapter that meets ``ra.ports.CaPort``
(structurally; ``ca`` does not import ``ra``) over the CA held to the RA's principal
(``ca.authorization.ra_view``), so the RA has the same permissions in process as over HTTP.
Composition roots (``sscard ra serve``, scripts/allinone.py, the test rigs) wire it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ca.authority import CertificateAuthority, IssueRequest
from ca.authorization import AuthorizedAuthority, ra_view
from ca.client import attested_key
from ca.errors import RequestRefused
from ca.records import MAX_BATCH_ITEMS, IssuedCertificate, Status
from sscard.audit.log import AuditLog
from sscard.crypto.asymmetric import PublicKey
from sscard.x509.values import RevocationReason, Serial


class InProcessCa:
    """``ra.ports.CaPort`` over a principal-bound CA in this process."""

    def __init__(self, view: AuthorizedAuthority) -> None:
        self._view = view

    @property
    def principal(self) -> str:
        return self._view.principal.name

    def chain(self) -> Sequence[bytes]:
        return [cert.dump() for cert in self._view.chain()]

    def status(self, serial: Serial) -> Status:
        status: Status = self._view.status(int(serial)).status
        return status

    def issue_from_csr(self, csr_der: bytes, profile: str,
                       request_id: str | None = None) -> IssuedCertificate:
        issued: IssuedCertificate = self._view.issue_from_csr(csr_der, profile,
                                                              request_id=request_id)
        return issued

    def issue_for_public_key(self, spki_der: bytes, subject: str, profile: str,
                             request_id: str | None = None) -> IssuedCertificate:
        issued: IssuedCertificate = self._view.issue_for_public_key(
            PublicKey.from_spki(spki_der), subject, profile, request_id=request_id)
        return issued

    def issue_batch(self, entries: Sequence[tuple[bytes, str | None]], profile: str, *,
                    attest: bool = False) -> list[IssuedCertificate | RequestRefused]:
        """As ``ca.client.CaClient.issue_batch`` over HTTP: one authorised batch at the CA,
        each entry answered (and audited there) on its own, possession attested the same way."""
        if not 0 < len(entries) <= MAX_BATCH_ITEMS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_ITEMS} entries")
        requests = []
        for csr_der, request_id in entries:
            attested = attested_key(csr_der) if attest else None
            requests.append(IssueRequest(csr=csr_der, request_id=request_id, attested_key=(
                bytes.fromhex(attested) if attested is not None else None)))
        return [o.issued if o.issued is not None else RequestRefused(o.refused or "refused")
                for o in self._view.issue_each(requests, profile)]

    def revoke(self, serial: Serial, reason: RevocationReason) -> None:
        self._view.revoke(int(serial), reason)

    def close(self) -> None:
        self._view.close()


def ra_port(authority: CertificateAuthority, home: Path | None = None) -> InProcessCa:
    """The CA as the RA may use it: through the principal ``ra`` of the CA's access file (or
    the default RA permission set)."""
    return InProcessCa(ra_view(authority, home or authority.home))


def open_ra_port(home: Path, audit: AuditLog, actor: str = "ra-service") -> InProcessCa:
    """Open the CA of ``home`` for an RA in the same process (``sscard ra serve``)."""
    return ra_port(CertificateAuthority.open(home, audit=audit, actor=actor), home)
