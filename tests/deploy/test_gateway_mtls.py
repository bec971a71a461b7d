"""``sscard gateway serve`` with mutual TLS through the one serving helper: the gateway names
the business system from the client certificate that gunicorn's TLS socket verified (no
request signature), workers share the cardholder challenges, and a client without a
certificate is refused at the handshake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from sscard.gateway.client import GatewayClient, GatewayClientError
from sscard.x509.pem import der_to_pem
from tests.deploy.tlsfiles import free_port
from tests.gateway.conftest import Rig, rig  # noqa: F401  (the gateway rig fixture)
from tests.gateway.test_deployment import DOC, home  # noqa: F401  (its gateway.toml)


def test_gateway_serve_names_the_caller_from_its_tls_certificate(rig: Rig,  # noqa: F811
                                                                 home: Path,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    (home / "tls-root.pem").write_bytes((rig.files / "tls-roots.pem").read_bytes())
    (home / "tls-ca.pem").write_bytes(der_to_pem(rig.config.intermediates[1].dump(),
                                                 "CERTIFICATE"))
    text = (home / "gateway.toml").read_text()
    text = (text.replace('trust_anchors = ["root.pem"]',
                         'trust_anchors = ["root.pem", "tls-root.pem"]')
            .replace('intermediates = ["ca.pem"]', 'intermediates = ["ca.pem", "tls-ca.pem"]')
            .replace('trusted_client_cert_header = "X-Client-Cert"\n', "")
            .replace('operations = ["sign", "verify"]',
                     'operations = ["sign", "verify", "cardholder"]')
            # the business system's TLS client certificate, registered by its fingerprint
            .replace('certificate_files = ["employment.pem"]',
                     'certificate_files = ["employment.pem", "tls-client.pem"]'))
    (home / "tls-client.pem").write_bytes((rig.files / "tls-client.pem").read_bytes())
    (home / "gateway.toml").write_text(text)
    port = free_port()
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sscard.cli", "--home", str(tmp_path / "data"), "gateway",
             "serve", "--config", str(home / "gateway.toml"), "--port", str(port),
             "--workers", "2", "--tls-cert", str(rig.files / "server.pem"),
             "--tls-key", str(rig.files / "server.key"),
             "--tls-client-ca", str(rig.files / "tls-roots.pem")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    pair = (str(rig.files / "tls-client.pem"), str(rig.files / "tls-client.key"))
    roots = str(rig.files / "tls-roots.pem")
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/health", timeout=5, cert=pair,
                                verify=roots).status_code == 200:
                    break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(log.read_text()) from None
                time.sleep(0.2)
        client = GatewayClient(url, tls_client=pair, ca_file=roots)
        signed = client.sign(DOC, "hr-sign")
        assert client.verify(signed)["valid"]
        person = rig.cardholder  # a cardholder-sign certificate (the only kind that authenticates)
        for _ in range(4):  # issued at one worker, answered at either, once
            challenge = client.cardholder_challenge()
            signature = person.key.sign(challenge["to_sign"])
            answer = client.cardholder_verify(challenge["challenge_id"], signature, person.cert)
            assert answer["authenticated"], answer
            with pytest.raises(GatewayClientError) as exc:
                client.cardholder_verify(challenge["challenge_id"], signature, person.cert)
            assert exc.value.code == "CHALLENGE_REPLAYED"
        with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
            requests.post(url + "/v1/verify", json={}, timeout=10, verify=roots)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    # the audit log names the system from its TLS certificate
    from sscard.audit import AuditLog

    audit = AuditLog.open(f"sqlite:///{home / 'audit.db'}", create=False)
    assert any(r.record.actor == "employment" and r.record.details.get("auth") == "mtls"
               for r in audit.records())
