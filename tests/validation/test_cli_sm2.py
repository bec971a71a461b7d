"""``sscard x509 verify`` on an SM2 chain of our own: PEM and DER files, CRLs, purpose, host."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import pem
from click.testing import CliRunner, Result

from sscard.validation.cli import verify
from tests.validation.chain import make_ca, make_crl, make_leaf, tampered


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("sm2cli")
    root = make_ca("CN=CLI根CA,C=CN")
    ca = make_ca("CN=CLI签发CA,C=CN", root)
    leaf = make_leaf(
        "CN=网关,C=CN",
        ca,
        key_usage=frozenset({"digital_signature"}),
        eku=["server_auth"],
        dns_names=["gw.hrss.example.cn"],
    )
    lost = make_leaf("CN=挂失,C=CN", ca)
    out: dict[str, str] = {}

    def put(name: str, data: bytes, kind: str | None) -> None:
        path = d / name
        path.write_bytes(pem.armor(kind, data) if kind else data)
        out[name] = str(path)

    put("root.pem", root.cert.dump(), "CERTIFICATE")
    put("ca.der", ca.cert.dump(), None)
    put("leaf.pem", leaf.cert.dump(), "CERTIFICATE")
    put("lost.der", lost.cert.dump(), None)
    put("bad.pem", tampered(leaf.cert).dump(), "CERTIFICATE")
    put("root.crl", make_crl(root).dump(), "X509 CRL")
    put("ca.crl", make_crl(ca, revoked=[(lost.cert, "key_compromise")]).dump(), None)
    return out


def invoke(files: dict[str, str], leaf: str, *extra: str) -> Result:
    args = [
        files[leaf],
        "--trust", files["root.pem"],
        "--intermediate", files["ca.der"],
        "--crl", files["root.crl"],
        "--crl", files["ca.crl"],
        *extra,
    ]  # fmt: skip
    return CliRunner().invoke(verify, args, catch_exceptions=False)


def test_valid_for_server_and_host(files: dict[str, str]) -> None:
    result = invoke(files, "leaf.pem", "--purpose", "server", "--hostname", "gw.hrss.example.cn")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: CN=网关, C=CN")


def test_revoked(files: dict[str, str]) -> None:
    result = invoke(files, "lost.der")
    assert result.exit_code == 1, result.output
    assert "REVOKED:" in result.output


def test_tampered(files: dict[str, str]) -> None:
    result = invoke(files, "bad.pem")
    assert result.exit_code == 1, result.output
    assert "BAD_SIGNATURE:" in result.output


def test_wrong_purpose_and_host_are_both_reported(files: dict[str, str]) -> None:
    result = invoke(files, "leaf.pem", "--purpose", "client", "--hostname", "evil.example.com")
    assert result.exit_code == 1, result.output
    assert "WRONG_PURPOSE:" in result.output
    assert "HOSTNAME_MISMATCH:" in result.output


def test_purpose_any(files: dict[str, str]) -> None:
    assert invoke(files, "lost.der", "--revocation", "none", "--purpose", "any").exit_code == 0


def test_truncated_intermediate_is_unusable(files: dict[str, str], tmp_path: Path) -> None:
    cut = tmp_path / "cut.der"
    cut.write_bytes(Path(files["ca.der"]).read_bytes()[:100])
    result = CliRunner().invoke(
        verify, [files["leaf.pem"], "--trust", files["root.pem"], "--intermediate", str(cut)]
    )
    assert result.exit_code == 2
    assert f"intermediate {cut}" in result.output
