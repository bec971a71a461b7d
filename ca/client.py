"""Calling the CA API over HTTP: what the RA uses when the CA runs in its own zone.

The client signs every request with the caller's service identity (``sscard.httpsig``: the RA's
service certificate and key), or sends an API token. The CA's problem documents come back as
the CA's own errors, so a caller handles the same exceptions in process and over HTTP::

    ca = CaClient("https://ca.example:8080", signer=RequestSigner(ra_key, ra_certificate))
    issued = ca.issue_from_csr(csr_der, "cardholder-sign")
    ca.revoke(Serial(issued.serial), RevocationReason.keyCompromise)

``UnknownCertificate`` (404), ``AlreadyRevoked`` (409), ``NotPermitted`` (401/403),
``RequestRefused`` (400/422); ``CaUnavailable`` when the CA cannot be reached or answers 5xx
(nothing was done, try again later); any other answer is a ``CaServiceError``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

from ca.errors import (
    AlreadyRevoked,
    CAError,
    CaServiceError,
    CaUnavailable,
    NotPermitted,
    RequestRefused,
    UnknownCertificate,
)
from ca.issuance import proven_public_key
from ca.records import MAX_BATCH_ITEMS, IssuedCertificate, Status
from sscard import problem
from sscard.httpsig import RequestSigner
from sscard.x509.errors import X509Error
from sscard.x509.parse import load_csr
from sscard.x509.pem import der_to_pem, pem_blocks
from sscard.x509.values import RevocationReason, Serial

#: the CA's stable problem codes, as the CA's own errors
_ERRORS: dict[str, type[CAError]] = {
    "unknown_certificate": UnknownCertificate,
    "already_revoked": AlreadyRevoked,
    "refused": RequestRefused,
    "bad_request": RequestRefused,
    "bad_csr": RequestRefused,
    "bad_public_key": RequestRefused,
    "bad_serial": RequestRefused,
}


def attested_key(csr_der: bytes) -> str | None:
    """The hex SHA-256 of the CSR's SubjectPublicKeyInfo once its proof of possession has
    verified here; None when it does not (the CA then checks it, and refuses)."""
    try:
        parsed = load_csr(csr_der)
        proven_public_key(parsed)
    except (X509Error, RequestRefused):
        return None
    spki = parsed["certification_request_info"]["subject_pk_info"].dump()
    return hashlib.sha256(spki).hexdigest()


def _request_id(request_id: str | None) -> dict[str, str]:
    return {} if request_id is None else {"request_id": request_id}


class CaClient:
    """A session with the CA API as one caller (a request signer, or an API token)."""

    def __init__(self, base_url: str, *, signer: RequestSigner | None = None,
                 token: str | None = None, timeout: float = 30.0,
                 verify: bool | str = True) -> None:
        if (token is None) == (signer is None):
            raise ValueError("give a request signer or an API token (one of them)")
        self.base_url = base_url.rstrip("/")
        self._prefix = urlsplit(self.base_url).path
        self.timeout = timeout
        self._signer = signer
        self._session = requests.Session()
        if token is not None:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._session.verify = verify

    def __repr__(self) -> str:  # never the token
        return f"CaClient({self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None,
              sign: bool = True) -> requests.Response:
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if sign and self._signer is not None:
            headers.update(self._signer.headers(method, self._prefix + path, "", data))
        try:
            response = self._session.request(method, self.base_url + path, data=data or None,
                                             headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CaUnavailable(0, "unreachable", str(exc)) from None
        if response.status_code >= 400:
            found = problem.parse(response.status_code, response.headers.get("Content-Type"),
                                  response.content)
            if found.status >= 500:
                raise CaUnavailable(found.status, found.code, found.detail)
            if found.status in (401, 403):
                raise NotPermitted(f"CA API: {found.detail} ({found.code})")
            error = _ERRORS.get(found.code)
            if error is not None:
                raise error(f"CA API: {found.detail}")
            raise CaServiceError(found.status, found.code, found.detail)
        return response

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        response = self._send(method, path, body)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise CaServiceError(response.status_code, "bad_answer",
                                 "the CA did not answer a JSON object")
        return answer

    @staticmethod
    def _issued(answer: dict[str, Any]) -> IssuedCertificate:
        try:
            (kind, der), = pem_blocks(str(answer["certificate"]).encode("ascii"))
            if kind != "CERTIFICATE":
                raise ValueError(f"a {kind} block, not a CERTIFICATE")
            return IssuedCertificate(int(Serial.parse(str(answer["serial"]))),
                                     str(answer["profile"]), der)
        except (KeyError, ValueError, TypeError, UnicodeError) as exc:
            raise CaServiceError(201, "bad_answer", f"issuance answer: {exc}") from None

    # -- what the RA needs (ra.ports.CaPort) -----------------------------------------------

    def chain(self) -> Sequence[bytes]:
        """The issuing CA's certificate first, the root last (DER), from the public download."""
        response = self._send("GET", "/certs/chain.pem", sign=False)
        try:
            blocks = pem_blocks(response.content)
        except ValueError as exc:
            raise CaServiceError(response.status_code, "bad_answer", f"chain: {exc}") from None
        if not blocks or any(kind != "CERTIFICATE" for kind, _ in blocks):
            raise CaServiceError(response.status_code, "bad_answer",
                                 "chain.pem holds no certificates, or other blocks")
        return [der for _, der in blocks]

    def status(self, serial: Serial) -> Status:
        answer = self._call("GET", f"/api/v1/certificates/{Serial(serial).hex}")
        try:
            return Status(answer["status"])
        except (KeyError, ValueError) as exc:
            raise CaServiceError(200, "bad_answer", f"status answer: {exc}") from None

    def issue_from_csr(self, csr_der: bytes, profile: str,
                       request_id: str | None = None) -> IssuedCertificate:
        """``request_id``: the caller's own id for the request; asked again with it (after a
        lost answer), the CA returns the certificate it issued the first time."""
        csr_pem = der_to_pem(csr_der, "CERTIFICATE REQUEST").decode("ascii")
        body = {"profile": profile, "csr": csr_pem}
        return self._issued(self._call("POST", "/api/v1/certificates",
                                       body | _request_id(request_id)))

    def issue_for_public_key(self, spki_der: bytes, subject: str, profile: str,
                             request_id: str | None = None) -> IssuedCertificate:
        body = {"profile": profile, "subject": subject,
                "public_key": base64.b64encode(spki_der).decode("ascii")}
        return self._issued(self._call("POST", "/api/v1/certificates",
                                       body | _request_id(request_id)))

    def issue_batch(self, entries: Sequence[tuple[bytes, str | None]], profile: str, *,
                    attest: bool = False) -> list[IssuedCertificate | RequestRefused]:
        """Issue for many CSRs (DER, each with the caller's optional request id) in one signed
        request (``POST /api/v1/certificates/batch``, at most ``MAX_BATCH_ITEMS`` entries): per
        entry, in order, its certificate or why the CA refused it. ``attest``: verify each
        CSR's proof of possession here and vouch for it (the CA checks the key is the one
        attested and need not verify again); needs the ``attest-pop`` permission. An entry
        whose signature does not verify here is sent unattested, for the CA to refuse."""
        if not 0 < len(entries) <= MAX_BATCH_ITEMS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_ITEMS} entries")
        requests_ = []
        for csr_der, request_id in entries:
            item: dict[str, Any] = {"csr": der_to_pem(csr_der, "CERTIFICATE REQUEST")
                                    .decode("ascii")} | _request_id(request_id)
            if attest:
                attested = attested_key(csr_der)
                if attested is not None:
                    item["attested_key_sha256"] = attested
            requests_.append(item)
        answer = self._call("POST", "/api/v1/certificates/batch",
                            {"profile": profile, "requests": requests_})
        results = answer.get("results")
        if not isinstance(results, list) or len(results) != len(entries):
            raise CaServiceError(200, "bad_answer", "batch answer: one result per request")
        out: list[IssuedCertificate | RequestRefused] = []
        for result in results:
            error = result.get("error") if isinstance(result, dict) else None
            if isinstance(error, dict):
                out.append(RequestRefused(f"CA API: {error.get('detail')}"))
            else:
                out.append(self._issued(result if isinstance(result, dict) else {}))
        return out

    def revoke(self, serial: Serial, reason: RevocationReason) -> None:
        self._call("POST", f"/api/v1/certificates/{Serial(serial).hex}/revoke",
                   {"reason": reason.name})
