"""Replay of a captured signed request against a two-worker gunicorn gateway: accepted exactly
once, whatever encoding of the certificate or rewrite of the ECDSA signature the attacker sends."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

import pytest
import requests

from sscard import httpsig
from sscard.gateway.config import fingerprint
from sscard.x509.pem import der_to_pem
from tests.cms.pki import Issued
from tests.gateway.conftest import Rig, business_system
from tests.pg import free_port
from tests.replay_attacks import captured_variants, gunicorn


def _home(rig: Rig, home: Path, caller: Issued) -> Path:
    (home / "root.pem").write_bytes(der_to_pem(rig.pki.root.cert.dump(), "CERTIFICATE"))
    (home / "ca.pem").write_bytes(der_to_pem(rig.pki.ca.cert.dump(), "CERTIFICATE"))
    (home / "gateway.toml").write_text(f"""
trust_anchors = ["root.pem"]
intermediates = ["ca.pem"]
database_url = "sqlite:///{home / 'gateway.db'}"

[systems.employment]
operations = ["verify"]
certificates = ["{fingerprint(caller.cert)}"]
""")
    return home


@pytest.mark.parametrize("algorithm", ["ec-p256", "sm2"])
def test_replay_across_two_gunicorn_workers(rig: Rig, tmp_path: Path, algorithm: str) -> None:
    # a business-system certificate, registered for 'employment' by its fingerprint
    caller = business_system("CN=employment,O=就业登记系统,C=CN", rig.pki.ca, algorithm)
    home = _home(rig, tmp_path, caller)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    exe = shutil.which("gunicorn") or str(Path(sys.executable).parent / "gunicorn")
    body = json.dumps({"signed": base64.b64encode(b"not cms").decode()}).encode()
    headers = httpsig.sign_request(caller.key, caller.cert, "POST", "/v1/verify", "", body)
    variants = captured_variants(headers, caller.cert, ecdsa=algorithm == "ec-p256")
    with gunicorn([exe, "-w", "2", "-k", "gthread", "--threads", "2", "-b",
                   f"127.0.0.1:{port}", "sscard.gateway.wsgi:app"],
                  {"SSCARD_GATEWAY_CONFIG": str(home / "gateway.toml"),
                   "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, url,
                  tmp_path / "gunicorn.log"):
        answers: dict[str, list[tuple[int, str]]] = {}
        for name, h in variants.items():
            for _ in range(4):  # new connections: the workers take turns
                r = requests.post(url + "/v1/verify", data=body, timeout=30,
                                  headers={**h, "Connection": "close",
                                           "Content-Type": "application/json"})
                code = r.json().get("code", "")
                answers.setdefault(name, []).append((r.status_code, code))
        metrics = requests.get(url + "/metrics", timeout=30).text
    # /metrics adds up both workers: every refusal is counted once
    refused = sum(1 for got in answers.values() for status, _ in got if status == 401)
    assert (f'sscard_http_requests_total{{method="POST",route="/v1/verify",service="gateway",'
            f'status="401"}} {float(refused)}') in metrics, metrics
    accepted = [(name, a) for name, got in answers.items() for a in got if a[0] != 401]
    assert len(accepted) == 1 and accepted[0][0] == "as captured", answers
    for name, got in answers.items():
        refusals = got[1:] if name == "as captured" else got
        expected = "UNAUTHENTICATED" if "long-form" in name else "REPLAYED_REQUEST"
        if "certificate signature" in name:
            expected = "REPLAYED_REQUEST"
        assert {code for _, code in refusals} == {expected}, (name, got)
