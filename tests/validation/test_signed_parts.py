"""sscard.asn1.signed: the signed octets, algorithm and signature read off a certificate's or
CRL's DER are exactly what asn1crypto gives; malformed or BER input is refused, not misread;
and the validator checks the signature over the octets the caller's object was parsed from."""

from __future__ import annotations

import pytest
from asn1crypto import crl, x509

from sscard.asn1.signed import signed_parts
from sscard.validation import RevocationMode, validate_path
from sscard.validation.memo import forget_all
from sscard.validation.result import ReasonCode
from sscard.x509.parse import load_certificate, load_crl
from tests.validation.chain import NOW, make_ca, make_crl, make_leaf

ROOT = make_ca("CN=Signed Parts Root,C=CN")
CA = make_ca("CN=Signed Parts CA,C=CN", ROOT)
# long enough for two-octet lengths at every level (tbs > 255 octets)
LEAF = make_leaf("CN=Signed Parts Leaf " + "x" * 300 + ",C=CN", CA)


def _as_asn1crypto(value: x509.Certificate | crl.CertificateList) -> tuple[bytes, bytes, bytes]:
    return bytes(value[0].dump()), bytes(value[1].dump()), bytes(value[2].contents)


@pytest.mark.parametrize("encoded", [ROOT.cert.dump(), LEAF.cert.dump()])
def test_certificate_parts_are_asn1crypto_s(encoded: bytes) -> None:
    parts = signed_parts(encoded)
    assert (parts.signed, parts.algorithm, parts.signature_bits) == _as_asn1crypto(
        x509.Certificate.load(encoded)
    )
    assert parts.signature == x509.Certificate.load(encoded)["signature_value"].native


def test_crl_parts_are_asn1crypto_s() -> None:
    encoded = make_crl(CA).dump()
    parts = signed_parts(encoded)
    assert (parts.signed, parts.algorithm, parts.signature_bits) == _as_asn1crypto(
        crl.CertificateList.load(encoded)
    )


def test_a_signature_of_bits_not_whole_octets_has_no_octets() -> None:
    encoded = bytearray(ROOT.cert.dump())
    parts = signed_parts(bytes(encoded))
    start = len(encoded) - len(parts.signature_bits)
    encoded[start] = 1  # one unused bit
    assert signed_parts(bytes(encoded)).signature is None


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x30\x80" + ROOT.cert.dump()[4:] + b"\x00\x00",  # indefinite length (BER)
        ROOT.cert.dump()[:-1],  # truncated
        b"\x30\x03\x02\x01\x01",  # one element, not three
        b"",
    ],
)
def test_malformed_or_ber_input_is_refused(encoded: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        signed_parts(encoded)


def _validate(leaf: x509.Certificate, the_crl: crl.CertificateList):
    return validate_path(
        leaf,
        trust_anchors=[load_certificate(ROOT.cert.dump())],
        intermediates=[load_certificate(CA.cert.dump())],
        crls=[the_crl],
        revocation=RevocationMode.LEAF,
        at=NOW,
    )


def test_the_signature_is_checked_over_the_octets_the_object_came_from() -> None:
    """Attack: a certificate and a CRL whose signed part was changed in the caller's object
    after parsing, and ones whose DER had a byte changed, are not taken for the originals
    (kept copies, signed parts read off encodings, remembered good signatures)."""
    forget_all()
    leaf_der, crl_der = LEAF.cert.dump(), make_crl(CA).dump()
    for _ in range(3):  # kept copies and remembered signatures from the second call on
        assert _validate(load_certificate(leaf_der), load_crl(crl_der)).valid

    changed = load_certificate(leaf_der)
    changed["tbs_certificate"]["serial_number"] = 12345
    result = _validate(changed, load_crl(crl_der))
    assert not result.valid and result.reasons[0].code is ReasonCode.BAD_SIGNATURE, result.reasons

    tampered = bytearray(leaf_der)
    tampered[tampered.index(b"Signed Parts Leaf") + 1] ^= 0x01
    result = _validate(load_certificate(bytes(tampered)), load_crl(crl_der))
    assert not result.valid and result.reasons[0].code is ReasonCode.BAD_SIGNATURE, result.reasons

    changed_crl = load_crl(crl_der)
    changed_crl["tbs_cert_list"]["this_update"] = x509.Time(name="utc_time", value=NOW)
    result = _validate(load_certificate(leaf_der), changed_crl)
    assert not result.valid and result.reasons[0].code is ReasonCode.REVOCATION_UNKNOWN, (
        result.reasons
    )
    assert _validate(load_certificate(leaf_der), load_crl(crl_der)).valid
