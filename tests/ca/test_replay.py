"""Replay of a captured signed issuance request against ``sscard ca serve --workers 2``: one
certificate, however the attacker re-encodes the caller's certificate or rewrites the ECDSA
signature (the CA once keyed its replay memory on the signature bytes: (r, n-s) issued twice)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from ca.authority import CertificateAuthority
from sscard import httpsig
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem
from tests.ca.test_service import new_csr
from tests.ca.test_service_cli import SSCARD, config_text, free_port, sscard
from tests.replay_attacks import captured_variants, gunicorn


@pytest.mark.timeout(300)
def test_replay_across_two_gunicorn_workers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "ca.toml").write_text(config_text("ec-p256"), encoding="utf-8")
    sscard(home, "ca", "init", "--config", str(tmp_path / "ca.toml"))
    # the caller: the RA's service identity (profile service, issued on the CA's home as the
    # administrators do), registered by fingerprint as a principal that may issue
    # business-system certificates; officers are refused at the CA API whatever the replay
    ra_key = SoftwareKey.generate("ec-p256")
    ra_csr = CsrBuilder().subject(parse_name("CN=ra-service,C=CN")).sign(ra_key)
    authority = CertificateAuthority.open(home, audit=AuditLog.at_home(home))
    try:
        ra = authority.issue_from_csr(ra_csr.dump(), "service").certificate
    finally:
        authority.close()
    (tmp_path / "ra.pem").write_bytes(der_to_pem(ra.dump(), "CERTIFICATE"))
    sscard(home, "ca", "principal", "add", "ra", "--ra", "--certificate", str(tmp_path / "ra.pem"))

    _, csr = new_csr("Business System 9")
    body = json.dumps({"profile": "business-system", "csr": csr.decode()}).encode()
    path = "/api/v1/certificates"
    headers = httpsig.sign_request(ra_key, ra, "POST", path, "", body)
    variants = captured_variants(headers, ra, ecdsa=True)
    assert "certificate signature (r, n-s)" in variants  # the CA signs with ECDSA here
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    answers: dict[str, list[tuple[int, str]]] = {}
    with gunicorn([SSCARD, "--home", str(home), "ca", "serve", "--port", str(port),
                   "--workers", "2", "--threads", "2"], {}, url, tmp_path / "serve.log",
                  health="/ready"):
        for name, h in variants.items():
            for _ in range(4):  # new connections: the workers take turns
                r = requests.post(url + path, data=body, timeout=60,
                                  headers={**h, "Connection": "close",
                                           "Content-Type": "application/json"})
                code = r.json().get("code", "")
                answers.setdefault(name, []).append((r.status_code, code))
    issued = [(name, a) for name, got in answers.items() for a in got if a[0] == 201]
    assert len(issued) == 1 and issued[0][0] == "as captured", answers
    for name, got in answers.items():
        refusals = got[1:] if name == "as captured" else got
        expected = "unauthenticated" if "long-form" in name else "replayed_request"
        assert {a for a in refusals} == {(401, expected)}, (name, got)
