"""Regression tests for what the fuzzers found (inputs in tests/ops/fuzz_findings/).

Open findings are strict xfails: they document the bug and turn into a failure the moment the
owner fixes it, so the marker is removed and the test then guards the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sscard.x509.errors import X509ParseError
from sscard.x509.parse import load_certificate, load_crl, load_csr

FINDINGS = Path(__file__).resolve().parent / "fuzz_findings"

PEM_SECOND_BLOCK = pytest.mark.xfail(
    strict=True, raises=ValueError,
    reason="open finding (reported to the x509 owner): sscard.x509.parse._load checks the PEM "
           "type with pem_blocks() outside its try, so a bundle whose first block is good and a "
           "later block is broken escapes as PemError instead of X509ParseError")


@PEM_SECOND_BLOCK
@pytest.mark.parametrize("loader", [load_certificate, load_csr, load_crl])
def test_broken_later_pem_block_is_an_x509_parse_error(loader: object) -> None:
    data = (FINDINGS / "x509-pem-second-block-csr.bin").read_bytes()
    with pytest.raises(X509ParseError):
        loader(data)  # type: ignore[operator]


@PEM_SECOND_BLOCK
def test_fuzzed_certificate_bundle_is_an_x509_parse_error() -> None:
    data = (FINDINGS / "x509-pem-second-block-cert.bin").read_bytes()
    with pytest.raises(X509ParseError):
        load_certificate(data)


@PEM_SECOND_BLOCK
def test_minimal_pem_bundle_with_broken_second_block() -> None:
    """The finding reduced by hand: a good first block, then one that is not base64."""
    from sscard.keys.software import SoftwareKey
    from sscard.x509.pem import der_to_pem
    from tests.ops.conftest import self_signed

    good = der_to_pem(self_signed(SoftwareKey.generate("sm2"), "CN=x"), "CERTIFICATE")
    data = good + b"-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n"
    assert load_certificate(good).serial_number > 0
    with pytest.raises(X509ParseError):
        load_certificate(data)
