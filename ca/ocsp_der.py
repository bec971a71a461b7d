"""DER encoding of OCSP responses, by hand, for speed.

A nonce request needs a freshly signed response every time, and building the response through
asn1crypto's object model cost about five times the SM2 signature itself (it re-serialises the
embedded responder certificate and every nested value on assignment). The response is a fixed
shape of a few SEQUENCEs, so it is concatenated here from pre-encoded parts instead; the
request side is read by ca.ocsp_request, and the tests parse every response back with
asn1crypto and with ``openssl ocsp``.
"""

from __future__ import annotations

import functools
from datetime import datetime

from asn1crypto import core

from sscard import der
from sscard.der import bit_string, explicit, octet_string, sequence, tlv

#: producedAt, thisUpdate and nextUpdate are whole seconds, the same for every answer of a
#: second: encoded once (strftime was the largest cost of the response after the signature)
generalized_time = functools.lru_cache(maxsize=64)(der.generalized_time)

OID_BASIC = core.ObjectIdentifier("1.3.6.1.5.5.7.48.1.1").dump()
OID_NONCE = core.ObjectIdentifier("1.3.6.1.5.5.7.48.1.2").dump()
OID_INVALIDITY_DATE = core.ObjectIdentifier("2.5.29.24").dump()

GOOD = b"\x80\x00"  # [0] IMPLICIT NULL
UNKNOWN = b"\x82\x00"  # [2] IMPLICIT NULL


def revoked(revocation_time: datetime, reason_code: int | None) -> bytes:
    """``[1] IMPLICIT RevokedInfo``: the time and, when known, ``[0] EXPLICIT CRLReason``."""
    content = generalized_time(revocation_time)
    if reason_code is not None:
        content += explicit(0, tlv(0x0A, bytes((reason_code,))))
    return tlv(0xA1, content)


def single_response(
    cert_id_der: bytes,
    cert_status: bytes,
    this_update: datetime,
    next_update: datetime,
    invalidity_date: datetime | None = None,
) -> bytes:
    parts = [cert_id_der, cert_status, generalized_time(this_update),
             explicit(0, generalized_time(next_update))]
    if invalidity_date is not None:
        extension = sequence(OID_INVALIDITY_DATE, octet_string(generalized_time(invalidity_date)))
        parts.append(explicit(1, sequence(extension)))
    return sequence(*parts)


def response_data(
    responder_id: bytes, produced_at: datetime, singles: list[bytes], nonce_der: bytes | None
) -> bytes:
    """ResponseData (version v1 is the DEFAULT and so absent); ``nonce_der`` is the encoded
    inner OCTET STRING of the request's nonce, echoed byte for byte."""
    parts = [responder_id, generalized_time(produced_at), sequence(*singles)]
    if nonce_der is not None:
        parts.append(explicit(1, sequence(sequence(OID_NONCE, octet_string(nonce_der)))))
    return sequence(*parts)


def successful_response(
    tbs_der: bytes, signature_algorithm_der: bytes, signature: bytes, certs_der: bytes | None
) -> bytes:
    """OCSPResponse(successful, BasicOCSPResponse); ``certs_der`` is the encoded
    ``[0] EXPLICIT SEQUENCE OF Certificate`` or None."""
    basic = sequence(tbs_der, signature_algorithm_der, bit_string(signature), certs_der or b"")
    response_bytes = sequence(OID_BASIC, octet_string(basic))
    return sequence(tlv(0x0A, b"\x00"), explicit(0, response_bytes))


def certs_field(cert_ders: list[bytes]) -> bytes:
    return explicit(0, sequence(*cert_ders))
