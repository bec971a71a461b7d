"""``sscard x509 verify`` (sscard.validation.cli.verify) on PKITS files and on bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from asn1crypto import pem
from click.testing import CliRunner, Result

from sscard.validation.cli import verify
from tests.validation.pkits import pkits_dir

PKITS = pkits_dir()
AT = "2011-04-15T00:00:00Z"


@pytest.fixture(scope="module", autouse=True)
def _pkits_present() -> None:
    if not (PKITS / "certs").is_dir():
        message = f"PKITS conformance data not found under {PKITS}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def c(name: str) -> str:
    return str(PKITS / "certs" / f"{name}.crt")


def r(name: str) -> str:
    return str(PKITS / "crls" / f"{name}.crl")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(verify, list(args), catch_exceptions=False)


GOOD = (
    c("ValidCertificatePathTest1EE"),
    "--trust", c("TrustAnchorRootCertificate"),
    "--intermediate", c("GoodCACert"),
    "--crl", r("TrustAnchorRootCRL"),
    "--crl", r("GoodCACRL"),
    "--at", AT,
)  # fmt: skip


def to_pem(src: str, kind: str, dest: Path) -> str:
    dest.write_bytes(pem.armor(kind, Path(src).read_bytes()))
    return str(dest)


def test_valid_path_exits_0_and_names_path_and_policy() -> None:
    result = invoke(*GOOD)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: C=US, O=Test Certificates 2011, CN=Valid EE")
    assert "1: C=US, O=Test Certificates 2011, CN=Good CA" in result.output
    assert "user-constrained policies: 2.16.840.1.101.3.2.1.48.1" in result.output
    assert "revocation was not checked" not in result.output


def test_pem_inputs_work_like_der(tmp_path: Path) -> None:
    result = invoke(
        to_pem(c("ValidCertificatePathTest1EE"), "CERTIFICATE", tmp_path / "leaf.pem"),
        "--trust", to_pem(c("TrustAnchorRootCertificate"), "CERTIFICATE", tmp_path / "ta.pem"),
        "--intermediate", to_pem(c("GoodCACert"), "CERTIFICATE", tmp_path / "ca.pem"),
        "--crl", to_pem(r("TrustAnchorRootCRL"), "X509 CRL", tmp_path / "ta.crl"),
        "--crl", to_pem(r("GoodCACRL"), "X509 CRL", tmp_path / "ca.crl"),
        "--at", AT,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_leaf_file_may_carry_its_chain(tmp_path: Path) -> None:
    bundle = tmp_path / "chain.pem"
    bundle.write_bytes(
        pem.armor("CERTIFICATE", Path(c("ValidCertificatePathTest1EE")).read_bytes())
        + pem.armor("CERTIFICATE", Path(c("GoodCACert")).read_bytes())
    )
    result = invoke(
        str(bundle), "--trust", c("TrustAnchorRootCertificate"),
        "--crl", r("TrustAnchorRootCRL"), "--crl", r("GoodCACRL"), "--at", AT,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_revoked_leaf_exits_1_with_reason_and_time() -> None:
    result = invoke(
        c("InvalidRevokedEETest3EE"),
        "--trust", c("TrustAnchorRootCertificate"),
        "--intermediate", c("GoodCACert"),
        "--crl", r("TrustAnchorRootCRL"), "--crl", r("GoodCACRL"),
        "--at", AT,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "NOT VALID" in result.output
    assert "REVOKED:" in result.output
    assert "compromised key" in result.output and "2010-01-01" in result.output


def test_missing_crl_for_a_ca_exits_1_revocation_unknown() -> None:
    result = invoke(
        c("ValidCertificatePathTest1EE"),
        "--trust", c("TrustAnchorRootCertificate"),
        "--intermediate", c("GoodCACert"),
        "--crl", r("GoodCACRL"),
        "--at", AT,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "REVOCATION_UNKNOWN:" in result.output


def test_without_revocation_sources_says_revocation_not_checked() -> None:
    result = invoke(
        c("ValidCertificatePathTest1EE"),
        "--trust", c("TrustAnchorRootCertificate"),
        "--intermediate", c("GoodCACert"),
        "--at", AT,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: revocation was not checked" in result.output


def test_revocation_require_without_sources_exits_1() -> None:
    result = invoke(
        c("ValidCertificatePathTest1EE"),
        "--trust", c("TrustAnchorRootCertificate"),
        "--intermediate", c("GoodCACert"),
        "--at", AT, "--revocation", "require",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "REVOCATION_UNKNOWN" in result.output


def test_missing_intermediate_exits_1_untrusted_root() -> None:
    result = invoke(
        c("ValidCertificatePathTest1EE"), "--trust", c("TrustAnchorRootCertificate"), "--at", AT
    )
    assert result.exit_code == 1, result.output
    assert "UNTRUSTED_ROOT:" in result.output


def test_expired_at_later_time() -> None:
    result = invoke(*GOOD[:-2], "--at", "2031-01-01T00:00:00+00:00")
    assert result.exit_code == 1, result.output
    assert "EXPIRED:" in result.output


def test_naive_time_is_utc() -> None:
    result = invoke(*GOOD[:-2], "--at", "2011-04-15T00:00:00")
    assert result.exit_code == 0, result.output


def test_policy_options_reach_the_validator() -> None:
    # ValidCertificatePathTest1EE asserts NIST-test-policy-1 only.
    result = invoke(*GOOD, "--policy", "2.16.840.1.101.3.2.1.48.2", "--explicit-policy")
    assert result.exit_code == 1, result.output
    assert "POLICY:" in result.output
    result = invoke(*GOOD, "--policy", "2.16.840.1.101.3.2.1.48.1", "--explicit-policy")
    assert result.exit_code == 0, result.output


def test_inhibit_any_policy_option() -> None:
    # PKITS 4.12.3: valid unless anyPolicy is inhibited from the start.
    args = (
        c("inhibitAnyPolicyTest3EE"),
        "--trust", c("TrustAnchorRootCertificate"),
        "--intermediate", c("inhibitAnyPolicy1CACert"),
        "--intermediate", c("inhibitAnyPolicy1subCA1Cert"),
        "--crl", r("TrustAnchorRootCRL"), "--crl", r("inhibitAnyPolicy1CACRL"),
        "--crl", r("inhibitAnyPolicy1subCA1CRL"),
        "--at", AT,
    )  # fmt: skip
    assert invoke(*args).exit_code == 0
    result = invoke(*args, "--inhibit-any-policy")
    assert result.exit_code == 1, result.output
    assert "POLICY:" in result.output


def test_inhibit_policy_mapping_option() -> None:
    # PKITS 4.10.1: the CA maps policy 1 to 2 and requires an explicit policy.
    args = (
        c("ValidPolicyMappingTest1EE"),
        "--trust", c("TrustAnchorRootCertificate"),
        "--intermediate", c("Mapping1to2CACert"),
        "--crl", r("TrustAnchorRootCRL"), "--crl", r("Mapping1to2CACRL"),
        "--at", AT,
    )  # fmt: skip
    assert invoke(*args).exit_code == 0
    result = invoke(*args, "--inhibit-policy-mapping")
    assert result.exit_code == 1, result.output
    assert "POLICY:" in result.output


def test_hostname_not_in_certificate_exits_1() -> None:
    result = invoke(*GOOD, "--hostname", "www.example.com")
    assert result.exit_code == 1, result.output
    assert "HOSTNAME_MISMATCH:" in result.output


# ---- unusable input: exit 2, with the file or option named ----


def test_unreadable_trust_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    result = invoke(c("ValidCertificatePathTest1EE"), "--trust", str(missing))
    assert result.exit_code == 2
    assert f"cannot read trust anchor {missing}" in result.output


def test_garbage_leaf_exits_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.der"
    junk.write_bytes(b"\x30\x82\x01\x00not a certificate")
    result = invoke(str(junk), "--trust", c("TrustAnchorRootCertificate"))
    assert result.exit_code == 2
    assert f"leaf certificate {junk}" in result.output
    assert "malformed certificate" in result.output


def test_empty_leaf_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    result = invoke(str(empty), "--trust", c("TrustAnchorRootCertificate"))
    assert result.exit_code == 2
    assert "empty input" in result.output


def test_truncated_crl_exits_2(tmp_path: Path) -> None:
    cut = tmp_path / "cut.crl"
    cut.write_bytes(Path(r("GoodCACRL")).read_bytes()[:-20])
    result = invoke(*GOOD, "--crl", str(cut))
    assert result.exit_code == 2
    assert f"CRL {cut}" in result.output


def test_certificate_given_as_crl_exits_2() -> None:
    result = invoke(*GOOD, "--crl", c("GoodCACert"))
    assert result.exit_code == 2
    assert "malformed CRL" in result.output


def test_crl_pem_given_as_trust_anchor_exits_2(tmp_path: Path) -> None:
    crl_pem = to_pem(r("GoodCACRL"), "X509 CRL", tmp_path / "ca.crl.pem")
    result = invoke(c("ValidCertificatePathTest1EE"), "--trust", crl_pem)
    assert result.exit_code == 2
    assert "trust anchor" in result.output and "no certificate found" in result.output


def test_bad_time_exits_2() -> None:
    result = invoke(*GOOD[:-2], "--at", "yesterday")
    assert result.exit_code == 2
    assert "--at 'yesterday' is not an ISO 8601 time" in result.output


def test_bad_policy_oid_exits_2() -> None:
    result = invoke(*GOOD, "--policy", "nist-policy-1")
    assert result.exit_code == 2
    assert "not a policy OID" in result.output


def test_unknown_purpose_and_missing_trust_are_usage_errors() -> None:
    assert invoke(*GOOD, "--purpose", "teleport").exit_code == 2
    assert invoke(c("ValidCertificatePathTest1EE")).exit_code == 2


@pytest.mark.parametrize("chain", [
    ("DSACACert", "ValidDSASignaturesTest4EE"),  # PKITS 4.1.4
    ("DSACACert", "DSAParametersInheritedCACert", "ValidDSAParameterInheritanceTest5EE"),  # 4.1.5
])
def test_pkits_dsa_runs_are_weak_algorithm_unless_legacy_allowed(chain: tuple[str, ...]) -> None:
    crls = ["TrustAnchorRootCRL", "DSACACRL"] + (
        ["DSAParametersInheritedCACRL"] if len(chain) == 3 else [])
    args = [c(chain[-1]), "--trust", c("TrustAnchorRootCertificate"), "--at", AT]
    for name in chain[:-1]:
        args += ["--intermediate", c(name)]
    for name in crls:
        args += ["--crl", r(name)]
    refused = invoke(*args)
    assert refused.exit_code == 1, refused.output
    assert "WEAK_ALGORITHM:" in refused.output
    assert "DSA" in refused.output
    allowed = invoke(*args, "--allow-legacy-algorithms")
    assert allowed.exit_code == 0, allowed.output
