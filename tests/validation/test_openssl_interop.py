"""SM2 certificate signatures, cross-checked with the OpenSSL 3 command line: what we validate,
OpenSSL verifies, and chains that OpenSSL makes, we validate.

OpenSSL 3.0 needs ``-vfyopt distid:1234567812345678`` for SM2 and applies it to the target
certificate only, so our chains are checked one link at a time (``-partial_chain``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from asn1crypto import pem, x509

from sscard.validation import ReasonCode, validate_path
from tests.validation.chain import make_ca, make_leaf, tampered

DISTID = "distid:1234567812345678"


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        message = "openssl command line not found (scripts/system-deps.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def write_pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(pem.armor("CERTIFICATE", cert.dump()))
    return path


def read_pem(path: Path) -> x509.Certificate:
    return x509.Certificate.load(pem.unarmor(path.read_bytes())[2])


def openssl_link_ok(
    openssl: str, tmp: Path, issuer: x509.Certificate, cert: x509.Certificate
) -> bool:
    result = subprocess.run(
        [openssl, "verify", "-vfyopt", DISTID, "-partial_chain",
         "-CAfile", write_pem(tmp / "issuer.pem", issuer), write_pem(tmp / "cert.pem", cert)],
        capture_output=True, text=True,
    )  # fmt: skip
    return result.returncode == 0


def test_our_sm2_chain_verifies_in_openssl(openssl: str, tmp_path: Path) -> None:
    root = make_ca("CN=互通根CA,C=CN")
    ca = make_ca("CN=互通CA,C=CN", root)
    leaf = make_leaf("CN=互通,C=CN", ca)
    ours = validate_path(leaf.cert, trust_anchors=[root.cert], intermediates=[ca.cert])
    assert ours.valid, ours.reasons
    assert openssl_link_ok(openssl, tmp_path, root.cert, ca.cert)
    assert openssl_link_ok(openssl, tmp_path, ca.cert, leaf.cert)

    bad = tampered(leaf.cert)
    ours_bad = validate_path(bad, trust_anchors=[root.cert], intermediates=[ca.cert])
    assert ours_bad.codes == {ReasonCode.BAD_SIGNATURE}
    assert not openssl_link_ok(openssl, tmp_path, ca.cert, bad)


def _openssl_chain(openssl: str, d: Path, gmt0009_id: bool) -> tuple[Path, Path]:
    sigopts = ["-sigopt", DISTID] if gmt0009_id else []
    vfyopts = ["-vfyopt", DISTID] if gmt0009_id else []

    def run(*args: object) -> None:
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)

    for name in ("root", "ca"):
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2",
            "-out", d / f"{name}.key")  # fmt: skip
    (d / "ca.ext").write_text(
        "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n"
    )
    run("req", "-x509", "-new", "-key", d / "root.key", "-sm3", *sigopts,
        "-subj", "/C=CN/O=OpenSSL peer/CN=OpenSSL SM2 Root", "-days", "30",
        "-addext", "basicConstraints=critical,CA:true",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", d / "root.pem")  # fmt: skip
    run("req", "-new", "-key", d / "ca.key", "-sm3", *sigopts,
        "-subj", "/C=CN/O=OpenSSL peer/CN=OpenSSL SM2 CA", "-out", d / "ca.csr")  # fmt: skip
    run("x509", "-req", "-in", d / "ca.csr", "-CA", d / "root.pem", "-CAkey", d / "root.key",
        "-sm3", *sigopts, *vfyopts, "-days", "30", "-extfile", d / "ca.ext",
        "-out", d / "ca.pem")  # fmt: skip
    return d / "root.pem", d / "ca.pem"


def test_openssl_made_sm2_chain_validates(openssl: str, tmp_path: Path) -> None:
    root_pem, ca_pem = _openssl_chain(openssl, tmp_path, gmt0009_id=True)
    root, ca = read_pem(root_pem), read_pem(ca_pem)
    result = validate_path(ca, trust_anchors=[root])
    assert result.valid, result.reasons
    assert validate_path(tampered(ca), trust_anchors=[root]).codes == {ReasonCode.BAD_SIGNATURE}


def test_openssl_sm2_signature_with_empty_id_is_refused(openssl: str, tmp_path: Path) -> None:
    # Without -sigopt, OpenSSL 3.0 signs certificates with an empty SM2 user ID, not the
    # GM/T 0009 default: such a certificate does not verify under GM/T 0009.
    root_pem, ca_pem = _openssl_chain(openssl, tmp_path, gmt0009_id=False)
    result = validate_path(read_pem(ca_pem), trust_anchors=[read_pem(root_pem)])
    assert result.codes == {ReasonCode.BAD_SIGNATURE}
