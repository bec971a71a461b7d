"""Regression tests for what the fuzzers found (inputs in tests/ops/fuzz_findings/).

Open findings are strict xfails: they document the bug and turn into a failure the moment the
owner fixes it, so the marker is removed and the test then guards the fix. Fixed so far: a broken
later block in a PEM bundle (now X509ParseError), a card answering a certificate read with fewer
than four bytes or with no data (now BadData instead of IndexError or an endless loop), a
SignedData carrying a certificate whose name cannot be compared (now a report: such extra
certificates are left out of path building, such a signer is INVALID)."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import x509

from sscard.card.client import CardClient
from sscard.card.errors import BadData, CardError, CardRemoved
from sscard.card.transport import Transport
from sscard.keys.software import SoftwareKey
from sscard.x509.errors import X509ParseError
from sscard.x509.parse import load_certificate, load_certificates, load_crl, load_csr

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
    first = load_certificate(good)
    # one certificate is read from the first block (linear, capped: sscard.x509.pem); the
    # bundle reader, which reads every block, names the broken one
    assert load_certificate(data).serial_number == first.serial_number
    with pytest.raises(X509ParseError):
        load_certificates(data)


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


def test_fuzzed_signed_data_with_odd_certificate_name_gets_a_report() -> None:
    from sscard.cms.verify import verify
    from sscard.keys.software import SoftwareKey
    from sscard.x509.parse import load_certificate
    from tests.ops.conftest import self_signed

    anchor = load_certificate(self_signed(SoftwareKey.generate("sm2"), "CN=anchor,C=CN"))
    data = (FINDINGS / "cms-certificate-name-unknown-attribute-type.bin").read_bytes()
    report = verify(data, [anchor], content=b"detached content")
    assert not report.valid


def test_extra_certificate_with_octet_string_name_attribute_gets_a_report() -> None:
    """The finding rebuilt by hand: a valid signature, plus one extra certificate in the
    SignedData whose subject holds an attribute (1.2.156.10260.4.1.1) as an OCTET STRING."""
    import datetime as dt

    from asn1crypto import core, x509

    from sscard.cms.signed import sign
    from sscard.cms.verify import verify
    from sscard.keys.software import SoftwareKey
    from sscard.x509.builder import CertificateBuilder
    from sscard.x509.extensions import key_identifier
    from sscard.x509.names import parse_name

    now = dt.datetime.now(dt.UTC)
    ca_key, ca_name = SoftwareKey.generate("sm2"), parse_name("CN=CA,C=CN")

    def cert(subject: x509.Name, key: SoftwareKey, serial: int,
             ca: bool = False) -> x509.Certificate:
        # key identifiers: the validator holds every certificate to RFC 5280's profile
        b = (CertificateBuilder().subject(subject).issuer(ca_name).public_key(key.public_key())
             .serial_number(serial).not_valid_before(now - dt.timedelta(days=1))
             .not_valid_after(now + dt.timedelta(days=9))
             .add_extension("key_identifier", key_identifier(key.public_key()))
             .add_extension("authority_key_identifier",
                            {"key_identifier": key_identifier(ca_key.public_key())}))
        if ca:
            b = b.add_extension("basic_constraints", {"ca": True}, critical=True).add_extension(
                "key_usage", {"key_cert_sign", "crl_sign"}, critical=True)
        else:
            b = b.add_extension("key_usage", {"digital_signature"}, critical=True)
        return x509.Certificate.load(b.sign(ca_key).dump())

    odd = x509.Name.load(x509.Name(name="", value=x509.RDNSequence([
        x509.RelativeDistinguishedName([x509.NameTypeAndValue({
            "type": "common_name",
            "value": x509.DirectoryString(name="utf8_string", value="张三")})]),
        x509.RelativeDistinguishedName([x509.NameTypeAndValue({
            "type": "1.2.156.10260.4.1.1", "value": core.OctetString(b"350102199001011234")})]),
    ])).dump())
    ca = cert(ca_name, ca_key, 1, ca=True)
    signer_key = SoftwareKey.generate("sm2")
    signer = cert(parse_name("CN=李四,C=CN"), signer_key, 3)
    extra = cert(odd, SoftwareKey.generate("sm2"), 2)
    report = verify(sign(b"doc", signer_key, signer, chain=[extra]), [ca])
    assert report.valid  # the odd extra certificate plays no part in the signer's path


def _ocsp_pki() -> tuple[SoftwareKey, x509.Certificate]:
    from tests.ops.conftest import self_signed

    key = SoftwareKey.generate("sm2")
    return key, load_certificate(self_signed(key, "CN=Fuzz CA,O=sscard,C=CN"))


@pytest.mark.parametrize("finding", ["ocsp-certid-hash-parameters-private-tag.bin",
                                     "ocsp-certid-hash-parameters-empty-bit-string.bin"])
def test_ocsp_certid_with_unparsable_hash_parameters_is_malformed_request(finding: str) -> None:
    """Fixed (guards in ca.ocsp.parse_request): the CertID's hash-algorithm parameters (a
    private-class tag where NULL belongs) were not parsed but echoed into a signed response that
    did not parse; parsing them, an empty BIT STRING raised IndexError, now caught too."""
    import datetime as dt

    from asn1crypto import ocsp

    from ca.ocsp import respond
    from ca.records import CertificateStatus, Status

    key, cert = _ocsp_pki()
    data = (FINDINGS / finding).read_bytes()
    answer = respond(data, lambda s: CertificateStatus(s, Status.GOOD), key, cert, cert,
                     dt.datetime.now(dt.UTC))
    assert ocsp.OCSPResponse.load(answer)["response_status"].native == "malformed_request"


def test_tsa_request_with_empty_bit_string_is_bad_data_format() -> None:
    """Fixed (one-line guard in ca.tsa.parse_request): an empty BIT STRING made asn1crypto
    raise IndexError, which escaped the parser and was answered systemFailure."""
    import datetime as dt

    from ca.tsa import TimeStampAuthority, TimeStampResp
    from sscard.keys.software import SoftwareKey
    from sscard.x509.builder import CertificateBuilder
    from sscard.x509.names import parse_name

    class Counter:
        n = 0

        def next_serial(self) -> int:
            self.n += 1
            return self.n

    key = SoftwareKey.generate("sm2")
    now = dt.datetime.now(dt.UTC)
    name = parse_name("CN=TSA,C=CN")
    cert = (CertificateBuilder().subject(name).issuer(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=9))
            .add_extension("key_usage", {"digital_signature"}, critical=True)
            .add_extension("extended_key_usage", ["time_stamping"], critical=True).sign(key))
    tsa = TimeStampAuthority(key, cert, Counter())
    data = (FINDINGS / "tsa-request-empty-bit-string.bin").read_bytes()
    status = TimeStampResp.load(tsa.respond(data))["status"]
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {"bad_data_format"}
