"""What the RA needs from the CA and the KMC, and nothing more (DESIGN.md §3, issue 11 item 1).

The RA holds a :class:`CaPort` and a :class:`KmcPort`, never the CA or the KMC themselves: the
embedded system wires in-process adapters (``ca.ports_inprocess``, ``keymgmt.ports_inprocess``,
each held to the RA's own principal there), a split deployment HTTP adapters over the published
clients. Values crossing the seam are the providers' public value types (``ca.records``,
``keymgmt.records``, ``sscard.x509.values``); refusals are their public errors
(``ca.errors.CAError`` with ``AlreadyRevoked`` and ``UnknownCertificate``,
``keymgmt.errors.KmcError``), whatever the transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ca.errors import RequestRefused
from ca.records import IssuedCertificate, Status
from keymgmt.records import EscrowResult, RecoveryResult
from sscard.x509.values import RevocationReason, Serial


class CaPort(Protocol):
    """The CA as the RA uses it: issue cardholder certificates, revoke them, ask their status,
    and read the chain that officer log-in certificates are validated against."""

    def chain(self) -> Sequence[bytes]:
        """The issuing CA's certificate first, the root last (DER)."""
        ...

    def status(self, serial: Serial) -> Status:
        """good, revoked or unknown (never issued by this CA)."""
        ...

    def issue_from_csr(self, csr_der: bytes, profile: str,
                       request_id: str | None = None) -> IssuedCertificate:
        """A certificate for the PKCS#10 request (its signature checked by the CA). With
        ``request_id`` (the RA's own id for this issuance) asking again returns the certificate
        issued the first time, so a lost answer never makes a second certificate."""
        ...

    def issue_batch(self, entries: Sequence[tuple[bytes, str | None]], profile: str, *,
                    attest: bool = False) -> list[IssuedCertificate | RequestRefused]:
        """Certificates for many CSRs (DER, each with its request id as for
        :meth:`issue_from_csr`) in one request (at most ``ca.records.MAX_BATCH_ITEMS``): per
        entry, in order, its certificate or why the CA refused it. ``attest``: the RA has
        verified each CSR's proof of possession and vouches for it (CMP's raVerified)."""
        ...

    def issue_for_public_key(self, spki_der: bytes, subject: str, profile: str,
                             request_id: str | None = None) -> IssuedCertificate:
        """A certificate for a key made elsewhere (the KMC's encryption key); ``request_id``
        as for :meth:`issue_from_csr`."""
        ...

    def revoke(self, serial: Serial, reason: RevocationReason) -> None:
        """Revoke; ``AlreadyRevoked`` or ``UnknownCertificate`` when there is nothing to do."""
        ...


class KmcPort(Protocol):
    """The KMC as the RA uses it: the encryption key pair of a dual-certificate card, and key
    recovery under the KMC's own dual control."""

    def escrow(self, owner: str, recipient_spki: bytes,
               request_id: str | None = None) -> EscrowResult:
        """Generate and escrow an encryption key for ``owner``, enveloped for the card's
        signing key ``recipient_spki``. With ``request_id`` (the RA's own id for this escrow)
        asking again returns the same key, so a lost answer makes no second key pair."""
        ...

    def attach_certificate(self, key_id: str, certificate_der: bytes) -> None:
        """Bind the encryption certificate the CA issued to a key this RA escrowed (the KMC
        lets the RA's caller bind its own escrows only; the same binding again is a no-op)."""
        ...

    def request_recovery(self, certificate_serial: Serial, recipient_spki: bytes,
                         reason: str) -> str:
        """Open a recovery of the key certified by ``certificate_serial`` onto the card with
        signing key ``recipient_spki``; returns the KMC's request id."""
        ...

    def approve_recovery(self, request_id: str, officer: str, comment: str) -> None:
        """The RA officer ``officer``'s approval at the KMC (so the KMC's dual control sees the
        same two people as the RA's)."""
        ...

    def complete_recovery(self, request_id: str) -> RecoveryResult:
        """Release the approved key, enveloped for the recipient card."""
        ...
