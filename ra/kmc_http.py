"""``ra.ports.KmcPort`` over the KMC API, through the published client ``keymgmt.client``: for
an RA whose KMC runs in another zone.

The KMC sees who acts (DESIGN.md §6.1): escrow, the binding of the encryption certificate (to
the keys the RA escrowed, and no others) and recovery requests come from the RA's own KMC
credential (the RA holds no CA credential at the KMC), and each approval of a recovery from
the approving officer's own credential (``officer``), so the KMC's dual control counts the same
two people as the RA's. The client's answers are turned into the KMC's public
errors: ``KmcUnavailable`` when the KMC cannot be reached or answers 5xx (nothing was done),
``KmcError`` for a refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from keymgmt.client import KmcClient, KmcServiceError
from keymgmt.errors import KmcError, KmcUnavailable
from keymgmt.records import EscrowResult, RecoveryResult
from sscard.x509.values import Serial

if TYPE_CHECKING:
    from sscard.tls_client import ClientTls


def kmc_client(url: str, api_key: str, tls: ClientTls | None = None) -> KmcClient:
    """The RA's own caller at the KMC, or an officer's (``api_key``), over mutual TLS with the
    RA's TLS client certificate when ``tls`` gives one (the KMC's ``--tls-client-ca``)."""
    return KmcClient(url, api_key, session=tls.session() if tls is not None else None)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except KmcServiceError as exc:
        if exc.status == 0 or exc.status >= 500:
            raise KmcUnavailable(str(exc)) from None
        raise KmcError(str(exc)) from None


class HttpKmc:
    """The KMC over HTTP as the RA's ``KmcPort``."""

    def __init__(self, ra: KmcClient, officer: Callable[[str], KmcClient]) -> None:
        self._ra, self._officer = ra, officer

    def escrow(self, owner: str, recipient_spki: bytes,
               request_id: str | None = None) -> EscrowResult:
        with _translated():
            return self._ra.escrow(owner, recipient_spki, request_id=request_id)

    def attach_certificate(self, key_id: str, certificate_der: bytes) -> None:
        with _translated():
            self._ra.attach_certificate(key_id, certificate_der)

    def request_recovery(self, certificate_serial: Serial, recipient_spki: bytes,
                         reason: str) -> str:
        with _translated():
            answer = self._ra.request_recovery(reason=reason, card_public_key=recipient_spki,
                                               certificate_serial=Serial(certificate_serial).hex)
        request_id = answer.get("request_id")
        if not isinstance(request_id, str):
            raise KmcError("the KMC's recovery answer names no request_id")
        return request_id

    def approve_recovery(self, request_id: str, officer: str, comment: str) -> None:
        with _translated():
            self._officer(officer).approve(request_id, comment)

    def complete_recovery(self, request_id: str) -> RecoveryResult:
        with _translated():
            return self._ra.complete_recovery(request_id)

    def close(self) -> None:
        self._ra.close()
