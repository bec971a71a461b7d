"""Reading an OCSPRequest (RFC 6960 §4.1): the CertIDs asked about and the nonce to echo.

``parse_request`` is the one entry point. Nearly every request a responder sees has the same
small shape: one or a few CertIDs with SHA-1/SHA-2/SM3 hashes and NULL or absent parameters,
and at most a nonce extension. That shape is read here directly from the DER (a nonce POST
spent more time in asn1crypto's object model than in its signature). Anything else (a
requestorName, a signed request, single-request extensions, other request extensions, an
unknown hash, a long-form tag, a non-minimal length or INTEGER, trailing bytes) makes the
direct reader give up, and the request goes through asn1crypto's strict parser with every
check, exactly as before. The direct reader therefore never accepts more than the full parser:
it only ever answers for inputs the full parser would read to the same values
(tests/ca/test_ocsp_request.py holds the two to each other on valid and mutated requests).
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import core
from asn1crypto import ocsp as asn1ocsp

from sscard import asn1 as _asn1  # noqa: F401  (registers SM OIDs such as sm3)

#: RFC 8954: a nonce of 0 or more than 32 octets is refused with malformedRequest.
MAX_NONCE_OCTETS = 32
#: More CertIDs than this in one request is refused (a cheap denial-of-service guard).
MAX_CERT_IDS = 64

#: the CertID hash algorithms the direct reader knows, by the DER of their OID (asn1crypto names)
_HASH_OIDS = {
    core.ObjectIdentifier(dotted).dump(): name
    for dotted, name in (
        ("1.3.14.3.2.26", "sha1"),
        ("2.16.840.1.101.3.4.2.1", "sha256"),
        ("2.16.840.1.101.3.4.2.2", "sha384"),
        ("2.16.840.1.101.3.4.2.3", "sha512"),
        ("1.2.156.10197.1.401", "sm3"),
    )
}
_NONCE_OID = core.ObjectIdentifier("1.3.6.1.5.5.7.48.1.2").dump()
_NULL = b"\x05\x00"


class OcspError(Exception):
    """A request this responder will not answer with certificate statuses.

    ``status`` is the OCSPResponseStatus name that goes back instead (asn1crypto spelling).
    """

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class CertId:
    """One CertID as asked: ``der`` is its encoding as received, echoed in the answer so
    that the client's bytes match byte for byte."""

    hash_algorithm: str  # asn1crypto's name ("sha1", "sm3"), or the dotted OID if unknown
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int
    der: bytes


@dataclass(frozen=True)
class ParsedRequest:
    """The parts of an OCSPRequest the responder acts on."""

    cert_ids: tuple[CertId, ...]
    #: the nonce extension value (the encoded inner OCTET STRING), echoed byte for byte;
    #: None when not asked
    nonce: bytes | None


def parse_request(request_der: bytes) -> ParsedRequest:
    """Parse and check an OCSPRequest; raise ``OcspError`` naming what is wrong."""
    direct = _read_common_shape(request_der)
    return direct if direct is not None else _parse_full(request_der)


# -- the common shape, read directly --------------------------------------------------------


class _Unusual(Exception):
    """Not the common shape: the full parser decides."""


def _element(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``: a one-octet tag and a
    minimal definite length that fits before ``end``, else ``_Unusual``."""
    if pos + 2 > end:
        raise _Unusual
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise _Unusual
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == 0x81:
        if pos + 1 > end or data[pos] < 0x80:
            raise _Unusual
        length = data[pos]
        pos += 1
    elif first == 0x82:
        if pos + 2 > end or (data[pos] << 8 | data[pos + 1]) < 0x100:
            raise _Unusual
        length = data[pos] << 8 | data[pos + 1]
        pos += 2
    else:
        raise _Unusual
    if pos + length > end:
        raise _Unusual
    return tag, pos, pos + length


def _expect(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    found, start, stop = _element(data, pos, end)
    if found != tag:
        raise _Unusual
    return start, stop


def _read_common_shape(data: bytes) -> ParsedRequest | None:
    try:
        return _read(data)
    except _Unusual:
        return None


def _read(data: bytes) -> ParsedRequest:
    start, stop = _expect(data, 0, len(data), 0x30)  # OCSPRequest
    if stop != len(data):
        raise _Unusual  # trailing bytes
    tbs_start, tbs_stop = _expect(data, start, stop, 0x30)  # TBSRequest
    if tbs_stop != stop:
        raise _Unusual  # optionalSignature (or garbage)
    list_start, list_stop = _expect(data, tbs_start, tbs_stop, 0x30)  # requestList, no version
    cert_ids = []
    pos = list_start
    while pos < list_stop:
        req_start, req_stop = _expect(data, pos, list_stop, 0x30)  # Request
        cert_ids.append(_cert_id(data, req_start, req_stop))
        pos = req_stop
    if not 1 <= len(cert_ids) <= MAX_CERT_IDS:
        raise _Unusual
    nonce = None
    if list_stop < tbs_stop:
        ext_start, ext_stop = _expect(data, list_stop, tbs_stop, 0xA2)  # requestExtensions
        if ext_stop != tbs_stop:
            raise _Unusual
        nonce = _only_nonce(data, ext_start, ext_stop)
    return ParsedRequest(tuple(cert_ids), nonce)


def _cert_id(data: bytes, start: int, stop: int) -> CertId:
    cid_start, cid_stop = _expect(data, start, stop, 0x30)
    if cid_stop != stop:
        raise _Unusual  # singleRequestExtensions
    alg_start, alg_stop = _expect(data, cid_start, cid_stop, 0x30)
    _, oid_stop = _expect(data, alg_start, alg_stop, 0x06)
    hash_name = _HASH_OIDS.get(data[alg_start:oid_stop])
    if hash_name is None or data[oid_stop:alg_stop] not in (b"", _NULL):
        raise _Unusual
    name_start, name_stop = _expect(data, alg_stop, cid_stop, 0x04)
    key_start, key_stop = _expect(data, name_stop, cid_stop, 0x04)
    int_start, int_stop = _expect(data, key_stop, cid_stop, 0x02)
    if int_stop != cid_stop or int_start == int_stop:
        raise _Unusual
    if int_stop - int_start > 1 and (
        (data[int_start] == 0 and data[int_start + 1] < 0x80)
        or (data[int_start] == 0xFF and data[int_start + 1] >= 0x80)
    ):
        raise _Unusual  # not minimal
    return CertId(
        hash_name,
        data[name_start:name_stop],
        data[key_start:key_stop],
        int.from_bytes(data[int_start:int_stop], "big", signed=True),
        data[start:cid_stop],
    )


def _only_nonce(data: bytes, start: int, stop: int) -> bytes:
    """The nonce of Extensions holding exactly one, non-critical nonce of 1 to 32 octets."""
    seq_start, seq_stop = _expect(data, start, stop, 0x30)
    ext_start, ext_stop = _expect(data, seq_start, seq_stop, 0x30)
    if seq_stop != stop or ext_stop != seq_stop:
        raise _Unusual
    _, oid_stop = _expect(data, ext_start, ext_stop, 0x06)
    if data[ext_start:oid_stop] != _NONCE_OID:
        raise _Unusual
    value_start, value_stop = _expect(data, oid_stop, ext_stop, 0x04)  # no "critical" field
    inner_start, inner_stop = _expect(data, value_start, value_stop, 0x04)
    if value_stop != ext_stop or inner_stop != value_stop:
        raise _Unusual
    if not 1 <= inner_stop - inner_start <= MAX_NONCE_OCTETS:
        raise _Unusual  # refused by the full parser, with its message
    return data[value_start:value_stop]


# -- everything else, through asn1crypto ----------------------------------------------------


def _parse_full(request_der: bytes) -> ParsedRequest:
    try:
        request = asn1ocsp.OCSPRequest.load(request_der, strict=True)
        tbs = request["tbs_request"]
        if tbs["version"].native != "v1":
            raise OcspError("malformed_request", f"unsupported request version {tbs['version']}")
        cert_ids = []
        for item in tbs["request_list"]:
            cert_id = item["req_cert"]
            # force the lazy parser over every field now, so garbage is caught here
            algorithm = cert_id["hash_algorithm"]["algorithm"]
            algorithm.dotted  # noqa: B018
            cert_id["hash_algorithm"]["parameters"].native  # noqa: B018  (echoed as sent)
            cert_ids.append(
                CertId(
                    algorithm.native,
                    cert_id["issuer_name_hash"].native,
                    cert_id["issuer_key_hash"].native,
                    cert_id["serial_number"].native,
                    cert_id.dump(),
                )
            )
        nonce: bytes | None = None
        for ext in tbs["request_extensions"] or []:
            name = ext["extn_id"].native
            if name == "nonce":
                value = ext["extn_value"].parsed
                length = len(value.native)
                if not 1 <= length <= MAX_NONCE_OCTETS:
                    raise OcspError(
                        "malformed_request",
                        f"nonce of {length} octets (RFC 8954 allows 1 to {MAX_NONCE_OCTETS})",
                    )
                nonce = value.dump()
            elif ext["critical"].native and name not in ("acceptable_responses",):
                raise OcspError(
                    "malformed_request", f"unsupported critical request extension {name}"
                )
            elif name == "acceptable_responses":
                accepted = {r.native for r in ext["extn_value"].parsed}
                if "basic_ocsp_response" not in accepted:
                    raise OcspError(
                        "unauthorized", "client does not accept id-pkix-ocsp-basic responses"
                    )
    except OcspError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError) as exc:
        raise OcspError("malformed_request", f"request is not a DER OCSPRequest: {exc}") from None
    if not cert_ids:
        raise OcspError("malformed_request", "request names no certificate")
    if len(cert_ids) > MAX_CERT_IDS:
        raise OcspError(
            "malformed_request", f"request names {len(cert_ids)} certificates (max {MAX_CERT_IDS})"
        )
    return ParsedRequest(tuple(cert_ids), nonce)
