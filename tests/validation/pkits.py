"""Loading NIST PKITS runs from ../shared/conformance/pkits/pkits_testcases.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from asn1crypto import crl, x509

from sscard.validation import ValidationResult, validate_path

ROOT = Path(__file__).resolve().parents[2]


def pkits_dir() -> Path:
    env = os.environ.get("SSCARD_CONFORMANCE")
    return (Path(env) if env else ROOT.parent / "shared" / "conformance") / "pkits"


@dataclass(frozen=True)
class PkitsRun:
    id: str
    test_number: str
    trust_anchor: str
    certs_root_to_leaf: tuple[str, ...]
    crls: tuple[str, ...]
    validation_time: datetime
    initial_policy_set: tuple[str, ...]
    explicit_policy: bool
    inhibit_policy_mapping: bool
    inhibit_any_policy: bool
    expected_valid: bool
    expected_policies: frozenset[str] | None

    @property
    def section(self) -> str:
        """``4.13`` for ``4.13.7``."""
        return ".".join(self.test_number.split(".")[:2])

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PkitsRun:
        settings = obj["settings"]
        expected = obj["expected"]
        policies = expected.get("user_constrained_policy_set")
        return cls(
            id=obj["id"],
            test_number=obj["test_number"],
            trust_anchor=obj["trust_anchor"],
            certs_root_to_leaf=tuple(obj["certs_root_to_leaf"]),
            crls=tuple(obj["crls"]),
            validation_time=datetime.fromisoformat(settings["validation_time"]),
            initial_policy_set=tuple(settings["initial_policy_set"]),
            explicit_policy=settings["initial_explicit_policy"],
            inhibit_policy_mapping=settings["initial_policy_mapping_inhibit"],
            inhibit_any_policy=settings["initial_inhibit_any_policy"],
            expected_valid=expected["valid"],
            expected_policies=frozenset(policies) if policies is not None else None,
        )


def load_runs() -> list[PkitsRun]:
    path = pkits_dir() / "pkits_testcases.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return [PkitsRun.from_json(obj) for obj in data["testcases"]]


@cache
def cert(name: str) -> x509.Certificate:
    return x509.Certificate.load((pkits_dir() / "certs" / f"{name}.crt").read_bytes())


@cache
def crl_named(name: str) -> crl.CertificateList:
    return crl.CertificateList.load((pkits_dir() / "crls" / f"{name}.crl").read_bytes())


def run(case: PkitsRun, *, allow_legacy_algorithms: bool = True) -> ValidationResult:
    """Validate the run's leaf the way an application would: build the path from the
    intermediates given (unordered), check revocation against the CRLs given."""
    chain = [cert(n) for n in case.certs_root_to_leaf]
    return validate_path(
        chain[-1],
        trust_anchors=[cert(case.trust_anchor)],
        intermediates=chain[1:-1],
        crls=[crl_named(n) for n in case.crls],
        at=case.validation_time,
        policies=case.initial_policy_set,
        explicit_policy=case.explicit_policy,
        inhibit_policy_mapping=case.inhibit_policy_mapping,
        inhibit_any_policy=case.inhibit_any_policy,
        # PKITS (2011) signs with SHA-1 and 1024-bit DSA in section 4.1.
        allow_legacy_algorithms=allow_legacy_algorithms,
    )


def matches(case: PkitsRun, result: ValidationResult) -> bool:
    if result.valid != case.expected_valid:
        return False
    if result.valid and case.expected_policies is not None:
        return result.user_constrained_policies == case.expected_policies
    return True
