"""NIST PKITS: all 249 runs of the conformance table through sscard.validation.validate_path."""

from __future__ import annotations

import os

import pytest

from sscard.validation import ReasonCode
from tests.validation.pkits import PkitsRun, load_runs, matches, pkits_dir, run

RUNS = load_runs()
EXPECTED_RUN_COUNT = 249

# Runs this harness does not support, with why. None at present: DSA parameter inheritance
# (4.1.5) is handled by sscard.validation.signatures.
UNSUPPORTED: dict[str, str] = {}

# What an invalid run's first reason must be, by PKITS section (PKITS.pdf §4 headings).
SECTION_CODES: dict[str, frozenset[ReasonCode]] = {
    "4.1": frozenset({ReasonCode.BAD_SIGNATURE}),  # signature verification
    "4.2": frozenset({ReasonCode.EXPIRED, ReasonCode.NOT_YET_VALID}),  # validity periods
    "4.3": frozenset({ReasonCode.UNTRUSTED_ROOT, ReasonCode.ISSUER_MISMATCH}),  # name chaining
    "4.4": frozenset({ReasonCode.REVOKED, ReasonCode.REVOCATION_UNKNOWN}),  # basic CRLs
    "4.5": frozenset({ReasonCode.REVOKED, ReasonCode.NOT_A_CA}),  # self-issued certificates
    "4.6": frozenset({ReasonCode.NOT_A_CA, ReasonCode.PATH_LENGTH}),  # basic constraints
    # key usage; a CRL signer without cRLSign leaves the status unknown
    "4.7": frozenset({ReasonCode.KEY_USAGE, ReasonCode.REVOCATION_UNKNOWN}),
    "4.8": frozenset({ReasonCode.POLICY}),  # certificate policies
    "4.9": frozenset({ReasonCode.POLICY}),  # require explicit policy
    "4.10": frozenset({ReasonCode.POLICY}),  # policy mappings
    "4.11": frozenset({ReasonCode.POLICY}),  # inhibit policy mapping
    "4.12": frozenset({ReasonCode.POLICY}),  # inhibit anyPolicy
    "4.13": frozenset({ReasonCode.NAME_CONSTRAINTS}),  # name constraints
    "4.14": frozenset({ReasonCode.REVOKED, ReasonCode.REVOCATION_UNKNOWN}),  # CRL dist. points
    "4.15": frozenset({ReasonCode.REVOKED, ReasonCode.REVOCATION_UNKNOWN}),  # delta CRLs
    "4.16": frozenset({ReasonCode.UNSUPPORTED_CRITICAL_EXTENSION}),  # private extensions
}


def _require_data() -> None:
    if RUNS:
        return
    message = f"PKITS conformance data not found under {pkits_dir()} (set SSCARD_CONFORMANCE)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.parametrize("case", RUNS, ids=lambda c: f"{c.test_number}-{c.id}")
def test_pkits_run(case: PkitsRun) -> None:
    if case.id in UNSUPPORTED:
        pytest.skip(f"unsupported: {UNSUPPORTED[case.id]}")
    result = run(case)
    assert result.valid == case.expected_valid, result.reasons
    if result.valid:
        assert case.expected_policies is not None
        assert result.user_constrained_policies == case.expected_policies
        assert result.revocation_checked
        assert [c.subject for c in result.path][-1] == result.leaf.subject
    else:
        assert result.user_constrained_policies == frozenset()
        assert result.reasons[0].code in SECTION_CODES[case.section], result.reasons


def test_pkits_summary(capsys: pytest.CaptureFixture[str]) -> None:
    _require_data()
    assert len(RUNS) == EXPECTED_RUN_COUNT
    supported = [c for c in RUNS if c.id not in UNSUPPORTED]
    mismatched = [c for c in supported if not matches(c, run(c))]
    matched = len(supported) - len(mismatched)
    with capsys.disabled():
        print(f"\nPKITS: {matched}/{len(RUNS)} runs match the expected result")
        for case_id, why in UNSUPPORTED.items():
            print(f"  unsupported: {case_id}: {why}")
        for case in mismatched:
            print(f"  MISMATCH: {case.test_number} {case.id}")
    assert not mismatched
    assert matched == EXPECTED_RUN_COUNT - len(UNSUPPORTED)


def test_default_algorithm_policy_refuses_1024_bit_dsa_with_sha1() -> None:
    _require_data()
    case = next(c for c in RUNS if c.test_number == "4.1.4")
    assert case.expected_valid  # valid under PKITS's own (2011) algorithm rules
    result = run(case, allow_legacy_algorithms=False)
    assert not result.valid
    assert result.reasons[0].code is ReasonCode.WEAK_ALGORITHM
    assert "1024" in result.reasons[0].message


def test_revoked_run_reports_reason_and_time() -> None:
    _require_data()
    case = next(c for c in RUNS if c.id == "Section4InvalidRevokedEETest3")
    result = run(case)
    reason = result.reasons[0]
    assert reason.code is ReasonCode.REVOKED
    assert reason.revocation_reason == "keyCompromise"
    assert reason.revocation_time is not None
    assert reason.revocation_time.year == 2010
