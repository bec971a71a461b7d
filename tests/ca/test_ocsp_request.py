"""The OCSPRequest reader (ca.ocsp_request): the direct reader of the common shape never accepts
more than asn1crypto's strict parser and, where it answers, reads the same values."""

from __future__ import annotations

import os
from typing import Any

import pytest
from asn1crypto import core, x509
from asn1crypto import ocsp as asn1ocsp

from ca.ocsp_request import (
    MAX_CERT_IDS,
    OcspError,
    ParsedRequest,
    _parse_full,
    _read_common_shape,
    parse_request,
)
from sscard.crypto.hashes import digest

NAME = x509.Name.build({"common_name": "Request CA", "country_name": "CN"})


def cert_id(serial: int, hash_name: str = "sha1", params: Any = None) -> dict[str, Any]:
    algorithm: dict[str, Any] = {"algorithm": hash_name}
    if params is not None:
        algorithm["parameters"] = params
    known = hash_name if hash_name != "md5" else "sha1"  # md5: a hash we never match
    return {
        "hash_algorithm": algorithm,
        "issuer_name_hash": digest(known, NAME.dump()),
        "issuer_key_hash": digest(known, b"key"),
        "serial_number": serial,
    }


def request(
    *ids: dict[str, Any],
    nonce: bytes | None = None,
    critical_nonce: bool = False,
    extensions: list[dict[str, Any]] | None = None,
    **tbs: Any,
) -> bytes:
    body: dict[str, Any] = {"request_list": [{"req_cert": i} for i in ids], **tbs}
    exts = list(extensions or [])
    if nonce is not None:
        exts.append(
            {"extn_id": "nonce", "critical": critical_nonce, "extn_value": core.OctetString(nonce)}
        )
    if exts:
        body["request_extensions"] = exts
    return asn1ocsp.OCSPRequest({"tbs_request": body}).dump()


def outcome(parse: Any, der: bytes) -> ParsedRequest | str:
    try:
        result: ParsedRequest = parse(der)
    except OcspError as exc:
        return exc.status
    return result


COMMON = {
    "one sha1": request(cert_id(5)),
    "nonce": request(cert_id(5), nonce=os.urandom(16)),
    "1-octet nonce": request(cert_id(5), nonce=b"\x00"),
    "32-octet nonce": request(cert_id(5), nonce=os.urandom(32)),
    "sha256, NULL parameters": request(cert_id(7, "sha256", core.Null())),
    "sm3": request(cert_id(7, "sm3")),
    "sha384 and sha512": request(cert_id(1, "sha384"), cert_id(2, "sha512")),
    "160-bit serial": request(cert_id((1 << 159) + 12345), nonce=b"n" * 8),
    "serial with a high bit": request(cert_id(0x80)),
    "negative serial": request(cert_id(-3)),
    "zero serial": request(cert_id(0)),
    "the most CertIDs": request(*(cert_id(n) for n in range(MAX_CERT_IDS))),
}

UNUSUAL = {
    "requestor name": request(
        cert_id(5), requestor_name=x509.GeneralName(name="dns_name", value="client.example")
    ),
    "critical nonce": request(cert_id(5), nonce=b"abcd", critical_nonce=True),
    "another extension": request(
        cert_id(5),
        extensions=[{"extn_id": "acceptable_responses", "extn_value": ["basic_ocsp_response"]}],
    ),
    "acceptable responses without basic": request(
        cert_id(5), extensions=[{"extn_id": "acceptable_responses", "extn_value": ["1.2.3.4"]}]
    ),
    "an empty nonce": request(cert_id(5), nonce=b""),
    "a 33-octet nonce": request(cert_id(5), nonce=b"x" * 33),
    "unknown hash": request(cert_id(5, "md5")),
    "too many CertIDs": request(*(cert_id(n) for n in range(MAX_CERT_IDS + 1))),
    "no CertID": request(),
    "version 2": request(cert_id(5), version=1),
    "trailing byte": request(cert_id(5)) + b"\x00",
    "not DER at all": b"\x30\x03\x02\x01",
    "empty": b"",
}


@pytest.mark.parametrize("name", COMMON)
def test_common_requests_are_read_directly_to_the_full_parsers_values(name: str) -> None:
    der = COMMON[name]
    direct = _read_common_shape(der)
    assert direct is not None
    assert direct == _parse_full(der) == parse_request(der)
    assert all(c.der in der for c in direct.cert_ids)  # echoed as received


@pytest.mark.parametrize("name", UNUSUAL)
def test_unusual_requests_go_to_the_full_parser(name: str) -> None:
    der = UNUSUAL[name]
    assert _read_common_shape(der) is None
    assert outcome(parse_request, der) == outcome(_parse_full, der)


def test_refusals_keep_their_status() -> None:
    assert outcome(parse_request, UNUSUAL["a 33-octet nonce"]) == "malformed_request"
    assert outcome(parse_request, UNUSUAL["too many CertIDs"]) == "malformed_request"
    assert outcome(parse_request, UNUSUAL["trailing byte"]) == "malformed_request"
    assert outcome(parse_request, UNUSUAL["acceptable responses without basic"]) == "unauthorized"


@pytest.mark.parametrize("name", ["nonce", "sha256, NULL parameters", "160-bit serial"])
def test_mutated_requests_are_never_read_differently(name: str) -> None:
    """Every single-octet change (tags, lengths, contents) and every truncation: the direct
    reader either steps aside or agrees with the strict parser (which must then accept)."""
    der = COMMON[name]
    candidates = [der[:cut] for cut in range(len(der))]
    for index in range(len(der)):
        for value in {
            0x00,
            0x01,
            0x04,
            0x05,
            0x30,
            0x7F,
            0x80,
            0x81,
            0x82,
            0xA2,
            0xFF,
            der[index] ^ 0x01,
            (der[index] + 1) & 0xFF,
        }:
            candidates.append(der[:index] + bytes((value,)) + der[index + 1 :])
    read = 0
    for mutated in candidates:
        direct = _read_common_shape(mutated)
        if direct is not None:
            read += 1
            assert outcome(_parse_full, mutated) == direct, mutated.hex()
    assert read > 0  # content changes (hashes, serial, nonce) are still read directly
