"""C2SP x509-limbo (../shared/conformance/limbo/limbo.json) through sscard.validation.

How a case maps onto the validator (the harness's choices, as pyca/cryptography's and
rustls-webpki's harnesses make theirs):
- ``webpki::*`` cases are run with the opt-in ``webpki`` profile (they test CA/Browser Forum
  rules); every other case with the default strict ``rfc5280`` profile.
- ``validation_kind`` SERVER / CLIENT: the leaf must allow id-kp-serverAuth / id-kp-clientAuth
  (``extended_key_usages``; the 14 cases that list ``extended_key_usage`` list that same one);
  ``expected_peer_name`` (DNS or IP) is checked as the host name. Not passed: the RFC822
  ``expected_peer_names`` of 10 CLIENT cases (the validator has no e-mail address check; those
  cases are about name constraints, which are checked) and the ``key_usage`` digitalSignature
  of the two cryptography.io cases (the leaf has it).
- ``max_chain_depth``: ``max_depth``; ``crls``: given, with revocation required for the leaf.
- Certificates are loaded with ``deep=False``, as the CLI does: a certificate whose extension
  does not parse is an answer (not valid), not an error.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from sscard.validation import RevocationMode, ValidationResult, validate_path
from sscard.x509.parse import load_certificates, load_crl
from tests.conftest import conformance_dir

EKU = {"SERVER": "1.3.6.1.5.5.7.3.1", "CLIENT": "1.3.6.1.5.5.7.3.2"}


def limbo_file() -> Path:
    return conformance_dir() / "limbo" / "limbo.json"


@cache
def load_cases() -> dict[str, dict[str, Any]]:
    path = limbo_file()
    if not path.is_file():
        return {}
    return {case["id"]: case for case in json.loads(path.read_text())["testcases"]}


@dataclass(frozen=True)
class Outcome:
    case_id: str
    expected: str
    got: str
    """SUCCESS, FAILURE, or ERROR (an exception escaped the validator)."""
    detail: str
    cpu_seconds: float

    @property
    def matches(self) -> bool:
        return self.got == self.expected


def arguments(case: dict[str, Any]) -> dict[str, Any]:
    """validate_path's keyword arguments for ``case`` (the leaf aside)."""
    name = case["expected_peer_name"]
    crls = [load_crl(c.encode()) for c in case["crls"]]
    return {
        "trust_anchors": [c for p in case["trusted_certs"]
                          for c in load_certificates(p.encode(), deep=False)],
        "intermediates": [c for p in case["untrusted_intermediates"]
                          for c in load_certificates(p.encode(), deep=False)],
        "crls": crls,
        "revocation": RevocationMode.LEAF if crls else None,
        "at": datetime.fromisoformat(case["validation_time"]) if case["validation_time"] else None,
        "hostname": name["value"] if name and name["kind"] in ("DNS", "IP") else None,
        "extended_key_usages": [EKU[case["validation_kind"]]],
        "profile": "webpki" if case["id"].startswith("webpki::") else "rfc5280",
        "max_depth": case["max_chain_depth"],
    }


def validate(case: dict[str, Any]) -> ValidationResult:
    leaf = load_certificates(case["peer_certificate"].encode(), deep=False)[0]
    return validate_path(leaf, **arguments(case))


@cache
def run(case_id: str) -> Outcome:
    case = load_cases()[case_id]
    start = time.process_time()
    try:
        result = validate(case)
        got = "SUCCESS" if result.valid else "FAILURE"
        detail = "; ".join(str(r) for r in result.reasons)
    except Exception as exc:  # the point: nothing may escape; it is counted and reported
        got, detail = "ERROR", f"{type(exc).__name__}: {exc}"
    return Outcome(case_id, case["expected_result"], got, detail, time.process_time() - start)
