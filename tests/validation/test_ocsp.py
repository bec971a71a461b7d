"""OCSP revocation checking against the OpenSSL 3 command line as an independent responder:
responses made offline by ``openssl ocsp`` and given to validate_path, and a live
``openssl ocsp -port`` responder that validate_path asks itself (fetch_revocation)."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import crl, ocsp, pem

from sscard.validation import ReasonCode, ValidationResult, validate_path
from tests.validation.chain import NOW, Issued, make_ca, make_crl, make_leaf, uri

PASSPHRASE = "ocsp-test-passphrase"
# GM/T 0009 user ID; OpenSSL 3.0 signs SM2 with an empty ID unless told otherwise.
SM2_DISTID = ["-rsigopt", "distid:1234567812345678"]


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        message = "openssl command line not found (scripts/system-deps.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OcspSetup:
    dir: Path
    root: Issued
    ca: Issued
    good: Issued
    revoked: Issued
    root_crl: crl.CertificateList
    port: int

    def request_response(self, leaf: Issued, *extra: str) -> ocsp.OCSPResponse:
        """Ask ``openssl ocsp`` offline (request file in, response file out)."""
        openssl = _openssl()
        leaf_pem = self.dir / f"{leaf.cert.serial_number:x}.pem"
        leaf_pem.write_bytes(pem.armor("CERTIFICATE", leaf.cert.dump()))
        req, resp = self.dir / "req.der", self.dir / "resp.der"
        subprocess.run(
            [openssl, "ocsp", "-issuer", self.dir / "ca.pem", "-cert", leaf_pem,
             "-reqout", req, "-no_nonce"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [openssl, "ocsp", *self.responder_args(), "-reqin", req, "-respout", resp, *extra],
            check=True, capture_output=True,
        )  # fmt: skip
        return ocsp.OCSPResponse.load(resp.read_bytes())

    def responder_args(self) -> list[str]:
        d = self.dir
        return [
            "-index", str(d / "index.txt"), "-CA", str(d / "ca.pem"),
            "-rsigner", str(d / "ca.pem"), "-rkey", str(d / "ca.key"),
            "-passin", f"file:{d / 'pass'}", "-ndays", "1",
        ]  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> OcspSetup:
    _openssl()
    d = tmp_path_factory.mktemp("ocsp")
    port = _free_port()
    aia = [
        (
            "authority_information_access",
            [{"access_method": "ocsp", "access_location": uri(f"http://127.0.0.1:{port}/")}],
            False,
        )
    ]
    root = make_ca("CN=OCSP Test Root,C=CN")
    ca = make_ca("CN=OCSP Test CA,C=CN", root)
    good = make_leaf("CN=在用卡,C=CN", ca, extra=aia)
    revoked = make_leaf("CN=挂失卡,C=CN", ca, extra=aia)
    (d / "ca.pem").write_bytes(pem.armor("CERTIFICATE", ca.cert.dump()))
    ca.key.store(d / "ca.key", PASSPHRASE.encode())
    (d / "pass").write_text(PASSPHRASE)
    (d / "pass").chmod(0o600)  # a secret file: owner only
    expiry = (NOW + timedelta(days=365)).strftime("%y%m%d%H%M%SZ")
    revoked_at = (NOW - timedelta(hours=2)).strftime("%y%m%d%H%M%SZ")
    (d / "index.txt").write_text(
        f"V\t{expiry}\t\t{good.cert.serial_number:X}\tunknown\t/CN=good\n"
        f"R\t{expiry}\t{revoked_at},keyCompromise\t{revoked.cert.serial_number:X}\tunknown"
        "\t/CN=revoked\n"
    )
    return OcspSetup(d, root, ca, good, revoked, make_crl(root), port)


def validate(setup: OcspSetup, leaf: Issued, **kwargs: Any) -> ValidationResult:
    return validate_path(
        leaf.cert,
        trust_anchors=[setup.root.cert],
        intermediates=[setup.ca.cert],
        crls=[setup.root_crl],  # the CA certificate's status comes from the root's CRL
        **kwargs,
    )


def test_good_ocsp_response_from_openssl(setup: OcspSetup) -> None:
    response = setup.request_response(setup.good, *SM2_DISTID)
    result = validate(setup, setup.good, ocsp_responses=[response])
    assert result.valid, result.reasons


def test_revoked_ocsp_response_from_openssl(setup: OcspSetup) -> None:
    response = setup.request_response(setup.revoked, *SM2_DISTID)
    result = validate(setup, setup.revoked, ocsp_responses=[response])
    assert not result.valid
    reason = result.reasons[0]
    assert reason.code is ReasonCode.REVOKED
    assert reason.message.startswith("OCSP response indicates")
    assert reason.revocation_reason == "keyCompromise"
    assert reason.revocation_time == NOW - timedelta(hours=2)


def test_response_for_another_certificate_does_not_count(setup: OcspSetup) -> None:
    response = setup.request_response(setup.good, *SM2_DISTID)
    result = validate(setup, setup.revoked, ocsp_responses=[response])
    assert result.codes == {ReasonCode.REVOCATION_UNKNOWN}


def test_sm2_response_signed_without_the_gmt0009_id_is_refused(setup: OcspSetup) -> None:
    response = setup.request_response(setup.good)  # OpenSSL's empty SM2 ID
    result = validate(setup, setup.good, ocsp_responses=[response])
    assert result.codes == {ReasonCode.REVOCATION_UNKNOWN}
    assert "signature" in result.reasons[0].message


@pytest.fixture(scope="module")
def responder(setup: OcspSetup) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [_openssl(), "ocsp", "-port", str(setup.port), *setup.responder_args(), *SM2_DISTID],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Wait for its "waiting for OCSP client connections" line; a probe connection would
        # stall the single-threaded responder.
        assert proc.stderr is not None
        deadline = time.monotonic() + 10
        seen = b""
        while b"waiting for OCSP client connections" not in seen:
            ready, _, _ = select.select([proc.stderr], [], [], 0.1)
            if ready:
                seen += os.read(proc.stderr.fileno(), 4096)
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"openssl ocsp responder did not start: {seen.decode()}")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_fetch_from_live_openssl_responder(
    setup: OcspSetup, responder: subprocess.Popen[bytes]
) -> None:
    good = validate(setup, setup.good, fetch_revocation=True)
    assert good.valid, good.reasons
    revoked = validate(setup, setup.revoked, fetch_revocation=True)
    assert revoked.codes == {ReasonCode.REVOKED}
    assert revoked.reasons[0].revocation_reason == "keyCompromise"


def test_unreachable_responder_is_revocation_unknown(setup: OcspSetup) -> None:
    # No responder on that port any more (or yet): the status cannot be had.
    lonely = make_leaf(
        "CN=no responder,C=CN",
        setup.ca,
        extra=[
            (
                "authority_information_access",
                [
                    {
                        "access_method": "ocsp",
                        "access_location": uri(f"http://127.0.0.1:{_free_port()}/"),
                    }
                ],
                False,
            )
        ],
    )
    result = validate(setup, lonely, fetch_revocation=True)
    assert result.codes == {ReasonCode.REVOCATION_UNKNOWN}
