"""The gateway as deployed: loaded from its TOML file, recording into the real audit log
(sscard.audit), behind a TLS-terminating proxy (trusted client-certificate header), and served
by ``sscard gateway serve``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from sscard import httpsig as rs
from sscard.audit import AuditLog
from sscard.gateway.client import GatewayClient, GatewayClientError
from sscard.gateway.config import ConfigError, load_config
from sscard.gateway.service import create_app
from sscard.x509.pem import der_to_pem
from tests.gateway.conftest import Rig, business_system

DOC = "工伤认定决定书".encode() * 10


@pytest.fixture()
def home(rig: Rig, tmp_path: Path) -> Path:
    (tmp_path / "pass").write_text("gateway pass\n")
    (tmp_path / "pass").chmod(0o600)  # a secret file: owner only
    rig.hr_sign.key.store(tmp_path / "hr-sign.key", b"gateway pass")
    (tmp_path / "hr-sign.pem").write_bytes(der_to_pem(rig.hr_sign.cert.dump(), "CERTIFICATE"))
    (tmp_path / "root.pem").write_bytes(der_to_pem(rig.pki.root.cert.dump(), "CERTIFICATE"))
    (tmp_path / "ca.pem").write_bytes(der_to_pem(rig.pki.ca.cert.dump(), "CERTIFICATE"))
    (tmp_path / "employment.pem").write_bytes(
        der_to_pem(rig.systems["employment"].cert.dump(), "CERTIFICATE"))
    (tmp_path / "gateway.toml").write_text(f"""
trust_anchors = ["root.pem"]
intermediates = ["ca.pem"]
audit_url = "sqlite:///{tmp_path / 'audit.db'}"
trusted_client_cert_header = "X-Client-Cert"

[keys.hr-sign]
key = "hr-sign.key"
passphrase_file = "pass"
certificate = "hr-sign.pem"
chain = ["ca.pem"]

[systems.employment]
certificate_files = ["employment.pem"]
operations = ["sign", "verify"]
signing_keys = ["hr-sign"]
""")
    return tmp_path


def _proxy_header(rig: Rig, who: str = "employment") -> dict[str, str]:
    cert = rig.systems[who].cert if who in rig.systems else rig.outsider.cert
    return {"X-Client-Cert": quote(der_to_pem(cert.dump(), "CERTIFICATE").decode(), safe="")}


def test_config_file_audit_log_and_proxy_header(rig: Rig, home: Path) -> None:
    config = load_config(home / "gateway.toml")
    assert set(config.keys) == {"hr-sign"} and config.trusted_client_cert_header
    client = create_app(config).test_client()
    body = {"key": "hr-sign", "content": base64.b64encode(DOC).decode()}
    answer = client.post("/v1/sign", json=body, headers=_proxy_header(rig))
    assert answer.status_code == 200, answer.json
    signed = answer.json["signed"]
    answer = client.post("/v1/verify", json={"signed": signed}, headers=_proxy_header(rig))
    assert answer.json["valid"] is True
    # a certificate from another CA in the header is still refused
    refused = client.post("/v1/verify", json={"signed": signed},
                          headers=_proxy_header(rig, "outsider"))
    assert refused.status_code == 401
    garbage = client.post("/v1/verify", json={"signed": signed},
                          headers={"X-Client-Cert": "not a certificate"})
    assert garbage.status_code == 401 and "not PEM" in garbage.json["detail"]

    log = AuditLog.open(f"sqlite:///{home / 'audit.db'}", create=False)
    records = [r.record for r in log.records()]
    assert [(r.actor, r.action, r.outcome) for r in records] == [
        ("employment", "gateway.sign", "attempt"), ("employment", "gateway.sign", "success"),
        ("employment", "gateway.verify", "attempt"), ("employment", "gateway.verify", "success"),
        ("unauthenticated", "gateway.verify", "attempt"),
        ("unauthenticated", "gateway.verify", "denied"),
        ("unauthenticated", "gateway.verify", "attempt"),
        ("unauthenticated", "gateway.verify", "denied"),
    ]
    text = json.dumps([r.details for r in records], ensure_ascii=False)
    assert "工伤" not in text and base64.b64encode(DOC).decode()[:40] not in text
    assert records[3].details["valid"] is True  # the verification's outcome, not its content
    assert records[1].details["attempt_seq"] == 1


def test_header_is_ignored_unless_configured(rig: Rig, home: Path) -> None:
    config = load_config(home / "gateway.toml")
    config.trusted_client_cert_header = None
    client = create_app(config).test_client()
    answer = client.post("/v1/verify", json={"signed": "AA=="}, headers=_proxy_header(rig))
    assert answer.status_code == 401 and answer.json["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.replace('signing_keys = ["hr-sign"]', 'signing_keys = ["nope"]'),
     "signing key 'nope' is not configured"),
    (lambda t: t.replace('operations = ["sign", "verify"]', 'operations = ["fly"]'),
     "unknown operations"),
    (lambda t: t.replace('certificate = "hr-sign.pem"', 'certificate = "ca.pem"'),
     "does not match the certificate"),
    (lambda t: t.replace('key = "hr-sign.key"', 'key = "missing.key"'), "missing.key"),
    (lambda t: t + "\n[[[", "gateway.toml"),
])
def test_bad_configuration_is_named(home: Path, edit: object, message: str) -> None:
    path = home / "gateway.toml"
    path.write_text(edit(path.read_text()))  # type: ignore[operator]
    with pytest.raises((ConfigError, OSError)) as exc:
        load_config(path)
    assert message in str(exc.value)


def test_sscard_gateway_serve(rig: Rig, home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "sscard.cli", "--home", str(home / "data"),
                             "gateway", "serve", "--config", str(home / "gateway.toml"),
                             "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if requests.get(url + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        system = rig.systems["employment"]
        body = json.dumps({"key": "hr-sign", "content": base64.b64encode(DOC).decode()}).encode()
        headers = rs.sign_request(system.key, system.cert, "POST", "/v1/sign", "", body)
        answer = requests.post(url + "/v1/sign", data=body, timeout=10,
                               headers={**headers, "Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        assert requests.get(url + "/openapi.json", timeout=5).json()["openapi"].startswith("3.")
        # the audit log of a served gateway: its data directory's key signs the checkpoints
        assert (home / "data" / "audit" / "audit-cert.pem").is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def _signed_headers(rig: Rig, body: bytes, path: str = "/v1/sign",
                    who: str = "employment") -> dict[str, str]:
    system = rig.systems[who]
    return {**rs.sign_request(system.key, system.cert, "POST", path, "", body),
            "Content-Type": "application/json"}


def test_systems_registered_by_fingerprint_not_by_subject(rig: Rig, home: Path) -> None:
    path = home / "gateway.toml"
    fund = rig.systems["fund"].cert
    colons = ":".join(f"{b:02X}" for b in hashlib.sha256(fund.dump()).digest())
    path.write_text(path.read_text() + f'\n[systems.fund]\ncertificates = ["{colons}"]\n'
                    'operations = ["verify"]\n')
    client = create_app(load_config(path)).test_client()
    body = json.dumps({"signed": base64.b64encode(b"x").decode()}).encode()
    for who in ("employment", "fund"):  # both authenticated: the junk is malformed
        assert client.post("/v1/verify", data=body,
                           headers=_signed_headers(rig, body, "/v1/verify", who)
                           ).status_code == 400, who
    # a look-alike of the same CA with the same subject is not registered
    lookalike = business_system("CN=employment,O=就业登记系统,C=CN", rig.pki.ca)
    rig.systems["lookalike"] = lookalike
    try:
        answer = client.post("/v1/verify", data=body,
                             headers=_signed_headers(rig, body, "/v1/verify", "lookalike"))
    finally:
        del rig.systems["lookalike"]
    assert answer.status_code == 401 and "not registered" in answer.json["detail"]


@pytest.mark.parametrize("entry,words", [
    ('subject = "CN=employment"', "no longer named by"),
    ('certificates = ["abcd"]', "not a SHA-256 fingerprint"),
])
def test_old_or_bad_system_registration_is_refused_clearly(home: Path, entry: str,
                                                           words: str) -> None:
    path = home / "gateway.toml"
    path.write_text(path.read_text().replace("[systems.employment]\n",
                                             f"[systems.employment]\n{entry}\n"))
    with pytest.raises(ConfigError, match=words):
        load_config(path)


@pytest.mark.parametrize("entry,words", [
    ('fetch_allow = ["file:///etc/"]', "only http and https"),
    ('fetch_allow = "http://ca/"', "must be a list"),
    ('caller_policies = "1.2.3"', "must be a list"),
])
def test_bad_fetch_and_policy_settings_are_refused_clearly(home: Path, entry: str,
                                                           words: str) -> None:
    path = home / "gateway.toml"
    path.write_text(entry + "\n" + path.read_text())
    with pytest.raises(ConfigError, match=words):
        load_config(path)


class _DownAudit:
    """An audit log whose database is gone."""

    def operation(self, *args: object, **kwargs: object) -> object:
        from sscard.audit import AuditUnavailable

        raise AuditUnavailable("audit record could not be written: database is locked")


def test_no_audit_record_no_operation(rig: Rig, home: Path) -> None:
    config = load_config(home / "gateway.toml")
    client = create_app(config, recorder=_DownAudit()).test_client()  # type: ignore[arg-type]
    body = json.dumps({"key": "hr-sign", "content": base64.b64encode(DOC).decode()}).encode()
    answer = client.post("/v1/sign", data=body, headers=_signed_headers(rig, body))
    assert answer.status_code == 503
    assert answer.json["code"] == "AUDIT_UNAVAILABLE"
    assert "signed" not in answer.json


def test_key_and_certificate_must_match_in_code_too(rig: Rig) -> None:
    from sscard.gateway.config import GatewayConfig, GatewayKey

    with pytest.raises(ConfigError, match=r"keys\.bad: the key does not match"):
        GatewayConfig(trust_anchors=[rig.pki.root.cert], systems={},
                      keys={"bad": GatewayKey(rig.hr_sign.key, rig.pki.signer.cert)})


def test_gunicorn_with_mutual_tls(rig: Rig, home: Path) -> None:
    """Production layout: gunicorn workers, TLS with client certificates (--cert-reqs 2); the
    gateway reads the peer certificate from gunicorn's socket."""
    import shutil

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the TLS side of the rig: EC server certificate, clients under the EC TLS root
    (home / "tls-root.pem").write_bytes((rig.files / "tls-roots.pem").read_bytes())
    text = (home / "gateway.toml").read_text().replace(
        'trust_anchors = ["root.pem"]', 'trust_anchors = ["root.pem", "tls-root.pem"]')
    text = text.replace('trusted_client_cert_header = "X-Client-Cert"\n', "").replace(
        'operations = ["sign", "verify"]', 'operations = ["sign", "verify", "cardholder"]')
    # the TLS client certificate is registered for the system too
    text = text.replace('certificate_files = ["employment.pem"]',
                        'certificate_files = ["employment.pem", "tls-client.pem"]')
    (home / "tls-client.pem").write_bytes((rig.files / "tls-client.pem").read_bytes())
    (home / "gateway.toml").write_text(text)
    chain = der_to_pem(rig.config.intermediates[1].dump(), "CERTIFICATE")  # the TLS CA
    (home / "tls-ca.pem").write_bytes(chain)
    text = (home / "gateway.toml").read_text().replace(
        'intermediates = ["ca.pem"]', 'intermediates = ["ca.pem", "tls-ca.pem"]')
    (home / "gateway.toml").write_text(text)
    gunicorn = shutil.which("gunicorn") or str(Path(sys.executable).parent / "gunicorn")
    env = dict(os.environ, SSCARD_GATEWAY_CONFIG=str(home / "gateway.toml"),
               SSCARD_GATEWAY_CHALLENGES=f"sqlite:///{home / 'challenges.db'}")
    proc = subprocess.Popen(
        [gunicorn, "-w", "2", "-k", "gthread", "-b", f"127.0.0.1:{port}", "--timeout", "120",
         "--certfile", str(rig.files / "server.pem"), "--keyfile", str(rig.files / "server.key"),
         "--ca-certs", str(rig.files / "tls-roots.pem"), "--cert-reqs", "2",
         "sscard.gateway.wsgi:app"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = GatewayClient(f"https://127.0.0.1:{port}",
                               tls_client=(str(rig.files / "tls-client.pem"),
                                           str(rig.files / "tls-client.key")),
                               ca_file=str(rig.files / "tls-roots.pem"))
        tls = {"cert": (str(rig.files / "tls-client.pem"), str(rig.files / "tls-client.key")),
               "verify": str(rig.files / "tls-roots.pem")}
        deadline = time.monotonic() + 30
        while True:  # until both workers answer (gunicorn boots them after binding)
            try:
                if all(requests.get(f"https://127.0.0.1:{port}/health", timeout=5,
                                    **tls).status_code == 200 for _ in range(4)):
                    break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        signed = client.sign(DOC, "hr-sign")
        assert client.verify(signed)["valid"]
        # the two workers share the challenge store: a challenge issued by one is answered at
        # either, once
        person = rig.cardholder
        for _ in range(4):
            challenge = client.cardholder_challenge()
            signature = person.key.sign(challenge["to_sign"])
            answer = client.cardholder_verify(challenge["challenge_id"], signature, person.cert)
            assert answer["authenticated"], answer
            with pytest.raises(GatewayClientError) as exc:
                client.cardholder_verify(challenge["challenge_id"], signature, person.cert)
            assert exc.value.code == "CHALLENGE_REPLAYED"
        with pytest.raises(requests.exceptions.SSLError):
            requests.post(f"https://127.0.0.1:{port}/v1/verify", json={}, timeout=10,
                          verify=str(rig.files / "tls-roots.pem"))
    except BaseException:
        proc.terminate()
        proc.wait(timeout=15)
        print("gunicorn said:", proc.stderr.read().decode(errors="replace") if proc.stderr else "")
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stderr:
            proc.stderr.close()


def test_validation_cache_seconds_from_the_file(home: Path) -> None:
    """`validation_cache_seconds = 0` (what `make serve` writes): a revocation shows at the
    next call; without it, the default minute."""
    assert load_config(home / "gateway.toml").validation_cache_seconds == 60
    text = (home / "gateway.toml").read_text()
    (home / "gateway.toml").write_text("validation_cache_seconds = 0\n" + text)
    assert load_config(home / "gateway.toml").validation_cache_seconds == 0
