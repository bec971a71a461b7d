"""A tbsCertificate whose definite length ends in the octet 0x80 (384 octets: 30 82 01 80).

asn1crypto took such a length for BER's indefinite form and re-encoded the value from its
parsed form whenever it was dumped for a signature check (sscard.asn1.lengths corrects it). So
the signature was checked over other octets than those received: a correctly signed
certificate that re-encodes differently failed (BAD_SIGNATURE), and a certificate altered into
a form that re-encodes to the signed octets passed, under another fingerprint than the one the
CA signed."""

from __future__ import annotations

from asn1crypto import parser, x509

from sscard import der
from sscard.validation import validate_path
from sscard.validation.result import ReasonCode, ValidationResult
from tests.validation.chain import NOW, make_ca, make_leaf

ROOT = make_ca("CN=Length Root,C=CN")
CA = make_ca("CN=Length CA,C=CN", ROOT)
_SUBJECT_UNIQUE_ID = b"\x82\x02\x05\x20"  # [2] IMPLICIT BIT STRING, 5 unused bits
_CRITICAL_KEY_USAGE = bytes.fromhex("0603551d0f0101ff")  # extnID keyUsage, critical TRUE


def _elements(data: bytes) -> list[bytes]:
    found, at = [], 0
    while at < len(data):
        size = parser.peek(data[at:])
        found.append(data[at:at + size])
        at += size
    return found


def _tbs_of_length(low_octet: int, *, unique_id: bool) -> bytes:
    """A leaf's tbsCertificate (issued by CA) whose length's last octet is ``low_octet``,
    padded through a URI in its subjectAltName."""
    pad = 10
    for _ in range(6):
        uri = x509.GeneralName(name="uniform_resource_identifier",
                               value="https://example.com/" + "a" * pad)
        leaf = make_leaf("CN=Length Leaf,C=CN", CA, extra=[("subject_alt_name", [uri], False)])
        parts = _elements(bytes(leaf.cert["tbs_certificate"].contents))
        if unique_id:
            parts.insert(-1, _SUBJECT_UNIQUE_ID)  # before the [3] extensions
        body = b"".join(parts)
        missing = (low_octet - len(body)) % 256
        if missing == 0 and len(body) > 255:
            return der.sequence(body)
        pad += missing
    raise AssertionError("no padding gives that length")


def _certificate(tbs: bytes, signed: bytes | None = None) -> x509.Certificate:
    """``tbs`` with CA's signature over ``signed`` (``tbs`` itself by default)."""
    algorithm = make_leaf("CN=Algorithm,C=CN", CA).cert["signature_algorithm"].dump()
    signature = CA.key.sign(signed if signed is not None else tbs)
    return x509.Certificate.load(der.sequence(tbs, algorithm, der.bit_string(signature)))


def _validate(cert: x509.Certificate) -> ValidationResult:
    return validate_path(cert, trust_anchors=[ROOT.cert], intermediates=[CA.cert], at=NOW)


def test_a_correctly_signed_certificate_of_such_a_length_is_valid() -> None:
    for low_octet in (0x80, 0x7F):
        cert = _certificate(_tbs_of_length(low_octet, unique_id=True))
        result = _validate(cert)
        assert result.valid, (hex(low_octet), result.reasons)


def test_octets_that_were_not_signed_do_not_pass_for_the_signed_ones() -> None:
    """The attack: take a signed tbsCertificate of such a length, write its keyUsage
    critical flag as BOOLEAN 01 instead of DER's FF (same length), keep the signature."""
    signed = _tbs_of_length(0x80, unique_id=False)
    assert signed.count(_CRITICAL_KEY_USAGE) == 1
    altered = signed.replace(_CRITICAL_KEY_USAGE, _CRITICAL_KEY_USAGE[:-1] + b"\x01")
    assert _validate(_certificate(signed)).valid
    result = _validate(_certificate(altered, signed=signed))
    assert not result.valid
    assert result.reasons[0].code is ReasonCode.BAD_SIGNATURE, result.reasons


def test_dump_returns_the_octets_parsed() -> None:
    tbs = _tbs_of_length(0x80, unique_id=True)
    cert = _certificate(tbs)
    assert cert["tbs_certificate"].dump() == tbs
    assert x509.Certificate.load(cert.dump()).dump() == cert.dump()
