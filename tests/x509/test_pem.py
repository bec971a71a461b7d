"""The one PEM reader: the usual forms, precise errors, and linear time on hostile input
(issue 12 finding 11: asn1crypto's unarmor took minutes on 4 MiB)."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sscard.cli import cli
from sscard.keys.software import SoftwareKey
from sscard.x509.parse import load_certificate, load_certificates
from sscard.x509.pem import PemError, der_to_pem, pem_blocks, pem_to_der
from tests.cms.pki import make_ca


@pytest.fixture(scope="module")
def der() -> bytes:
    return make_ca("CN=PEM Test,C=CN", algorithm="ec-p256").cert.dump()


def test_round_trip_bundle_text_between_and_crlf(der: bytes) -> None:
    pem = der_to_pem(der, "CERTIFICATE")
    assert pem_to_der(pem) == der and pem_to_der(der) == der
    bundle = b"subject=CN=PEM Test\r\n" + pem.replace(b"\n", b"\r\n") + b"junk\n" + pem
    assert pem_blocks(bundle) == [("CERTIFICATE", der), ("CERTIFICATE", der)]
    assert len(load_certificates(bundle)) == 2
    assert load_certificate(bundle).dump() == der


def test_rfc1421_headers_are_skipped() -> None:
    body = base64.b64encode(b"\x30\x03\x02\x01\x01").decode()
    text = (f"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n"
            f"\n{body}\n-----END RSA PRIVATE KEY-----\n").encode()
    assert pem_blocks(text) == [("RSA PRIVATE KEY", b"\x30\x03\x02\x01\x01")]


@pytest.mark.parametrize("text,words", [
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n", "no '-----END CERTIFICATE-----'"),
    (b"-----BEGIN CERTIFICATE-----\nA!AA\n-----END CERTIFICATE-----\n", "base64"),
    (b"-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n", "base64"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END X509 CRL-----\n", "no '-----END"),
    (b"-----BEGIN certificate-----\nAAAA\n-----END certificate-----\n", "no '-----BEGIN"),
])
def test_malformed_pem_is_named(text: bytes, words: str) -> None:
    with pytest.raises(PemError, match=words):
        pem_blocks(text)


def test_wrong_type_and_size_limit(der: bytes) -> None:
    with pytest.raises(PemError, match="expected PEM type 'PUBLIC KEY'"):
        pem_to_der(der_to_pem(der, "CERTIFICATE"), "PUBLIC KEY")
    with pytest.raises(PemError, match="over the limit of 100"):
        pem_blocks(der_to_pem(der, "CERTIFICATE"), max_bytes=100)


def _hostile_inputs() -> dict[str, bytes]:
    size = 4 * 1024 * 1024
    line = b"A" * 64 + b"\n"
    begin, end = b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n"
    garbage = begin + line * (size // 65) + end
    return {
        "one huge block": garbage,
        "no end line": b"-----BEGIN CERTIFICATE-----\n" + line * (size // 65),
        "begin lines only": b"-----BEGIN X-----\n" * (size // 18),
        "one long line": b"-----BEGIN CERTIFICATE-----\n" + base64.b64encode(
            os.urandom(size * 3 // 4)) + b"\n-----END CERTIFICATE-----\n",
    }


@pytest.mark.parametrize("name", list(_hostile_inputs()))
def test_x509_show_on_4_mib_answers_in_under_a_second(tmp_path: Path, name: str) -> None:
    path = tmp_path / "big.pem"
    path.write_bytes(_hostile_inputs()[name])
    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["x509", "show", str(path)])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 1 and "Error" in result.output, result.output
    assert elapsed < 1.0, f"{name}: {elapsed:.2f} s"


def test_a_public_key_pem_still_loads() -> None:
    from sscard.crypto.asymmetric import PublicKey

    key = SoftwareKey.generate("sm2").public_key()
    pem = der_to_pem(key.spki_der(), "PUBLIC KEY")
    assert PublicKey.from_pem(pem).spki_der() == key.spki_der()


def test_a_real_but_absurdly_large_certificate_is_refused_quickly(tmp_path: Path) -> None:
    from asn1crypto import x509

    from tests.cms.pki import make_leaf

    ca = make_ca("CN=Big CA,C=CN", algorithm="ec-p256")
    names = [x509.GeneralName(name="dns_name", value=f"host{i}.example.com")
             for i in range(15_000)]
    leaf = make_leaf("CN=big,C=CN", ca, "ec-p256", extra=[("subject_alt_name", names, False)])
    for name, data in (("big.pem", der_to_pem(leaf.cert.dump(), "CERTIFICATE")),
                       ("big.der", leaf.cert.dump())):
        (tmp_path / name).write_bytes(data)
        started = time.perf_counter()
        result = CliRunner().invoke(cli, ["x509", "show", str(tmp_path / name)])
        assert time.perf_counter() - started < 1.0, name
        assert result.exit_code == 1 and "larger than any real one" in result.output, name


def test_show_prints_the_fingerprint_systems_are_registered_by(tmp_path: Path) -> None:
    from sscard.gateway.config import fingerprint

    cert = make_ca("CN=Shown,C=CN", algorithm="ec-p256").cert
    (tmp_path / "c.pem").write_bytes(der_to_pem(cert.dump(), "CERTIFICATE"))
    result = CliRunner().invoke(cli, ["x509", "show", str(tmp_path / "c.pem")])
    assert f"SHA-256:    {fingerprint(cert)}" in result.output
