"""Fuzz the OCSP responder (ca.ocsp.respond): whatever arrives, it answers with a DER
OCSPResponse and never raises; input that is not an acceptable OCSPRequest is answered with
the error status parse_request names (malformedRequest for garbage), never 'successful'."""

from __future__ import annotations

import datetime as dt

import _common

with _common.instrumented():
    import _pki
    from asn1crypto import ocsp

    from ca.ocsp import OcspError, parse_request, respond
    from ca.records import CertificateStatus, RevocationReason, Status


def lookup(serial: int) -> CertificateStatus:
    if serial == 2:
        return CertificateStatus(serial, Status.REVOKED, _pki.NOW - dt.timedelta(hours=1),
                                 RevocationReason.keyCompromise)
    if serial % 3 == 0:
        return CertificateStatus(serial, Status.GOOD)
    return CertificateStatus(serial, Status.UNKNOWN)


def test_one_input(data: bytes) -> None:
    p = _pki.pki()
    answer = respond(data, lookup, p.ca_key, p.ca_cert, p.ca_cert, _pki.NOW)
    response = ocsp.OCSPResponse.load(answer, strict=True)
    status = response["response_status"].native
    try:
        parse_request(data)
    except OcspError as exc:
        if status != exc.status:
            raise AssertionError(
                f"request refused as {exc.status} but answered {status}") from None
        return
    # a well-formed request about certificates of another issuer is 'unauthorized' (RFC 5019)
    if status not in ("successful", "unauthorized"):
        raise AssertionError(f"a request that parses was answered {status}")
    response.native  # noqa: B018


def seeds() -> list[bytes]:
    return [_pki.ocsp_request(), _pki.ocsp_request((2, 3, 5), nonce=False),
            _pki.ocsp_request((1 << 158,))]


if __name__ == "__main__":
    _common.main(test_one_input, seeds)
