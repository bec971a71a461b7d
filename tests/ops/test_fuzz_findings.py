"""Regression tests for what the fuzzers found (inputs in tests/ops/fuzz_findings/).

Open findings are strict xfails: they document the bug and turn into a failure the moment the
owner fixes it, so the marker is removed and the test then guards the fix. Fixed so far: a broken
later block in a PEM bundle (now X509ParseError), a card answering a certificate read with fewer
than four bytes or with no data (now BadData instead of IndexError or an endless loop)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sscard.card.client import CardClient
from sscard.card.errors import BadData, CardError, CardRemoved
from sscard.card.transport import Transport
from sscard.x509.errors import X509ParseError
from sscard.x509.parse import load_certificate, load_crl, load_csr

FINDINGS = Path(__file__).resolve().parent / "fuzz_findings"

@pytest.mark.parametrize("loader", [load_certificate, load_csr, load_crl])
def test_broken_later_pem_block_is_an_x509_parse_error(loader: object) -> None:
    data = (FINDINGS / "x509-pem-second-block-csr.bin").read_bytes()
    with pytest.raises(X509ParseError):
        loader(data)  # type: ignore[operator]


def test_fuzzed_certificate_bundle_is_an_x509_parse_error() -> None:
    data = (FINDINGS / "x509-pem-second-block-cert.bin").read_bytes()
    with pytest.raises(X509ParseError):
        load_certificate(data)


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


class _Card(Transport):
    """A card that accepts every SELECT and answers READ BINARY from a list, then 6B00."""

    name = "regression"

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = list(reads)
        self.exchanges = 0

    def connect(self) -> bytes:
        return self.atr

    def transmit(self, apdu: bytes) -> bytes:
        self.exchanges += 1
        if self.exchanges > 500:
            raise CardRemoved("the client kept reading: it would loop forever on a real card")
        if apdu[1] == 0xB0:
            return self.reads.pop(0) if self.reads else bytes.fromhex("6B00")
        return bytes.fromhex("9000")

    def disconnect(self) -> None:
        return None

    @property
    def atr(self) -> bytes:
        return bytes.fromhex("3B6C00000000000000000000000000")


def test_fuzzed_card_answer_is_a_card_error() -> None:
    """The fuzzer's input, replayed through the harness's scripted transport."""
    import importlib.util
    import sys

    fuzz_dir = Path(__file__).resolve().parents[2] / "fuzz"
    sys.path.insert(0, str(fuzz_dir))
    try:
        spec = importlib.util.spec_from_file_location("fuzz_apdu_response",
                                                      fuzz_dir / "fuzz_apdu_response.py")
        assert spec is not None and spec.loader is not None
        harness = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(harness)
    finally:
        sys.path.remove(str(fuzz_dir))
    data = (FINDINGS / "card-read-certificate-short-head.bin").read_bytes()
    client = CardClient(harness.ScriptedTransport(data[1:]))
    with pytest.raises(CardError):
        client.read_certificate("sign")


def test_card_sending_fewer_than_four_bytes_is_bad_data() -> None:
    client = CardClient(_Card([bytes.fromhex("309000")]))
    with pytest.raises(BadData):
        client.read_certificate("sign")


def test_card_sending_no_data_does_not_loop() -> None:
    card = _Card([bytes.fromhex("308201009000")] + [bytes.fromhex("9000")] * 1000)
    with pytest.raises(BadData):
        CardClient(card).read_certificate("sign")


def test_well_formed_certificate_file_still_reads() -> None:
    """The guard the findings ask for must not break the normal path."""
    der = bytes.fromhex("30820006") + b"\x01" * 6
    reads = [der[:4] + b"\x90\x00", der + b"\x90\x00"]
    assert CardClient(_Card(reads)).read_certificate("sign") == der
    assert CardClient(_Card([b"\xff\xff\xff\xff\x90\x00"])).read_certificate("sign") is None
