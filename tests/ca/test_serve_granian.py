"""``sscard ca serve --server granian``: the CA's API under granian, two workers, the same app and
checks as under gunicorn, on SQLite and PostgreSQL:

- refusals first: an unsigned request, a caller that is no principal, a replayed request, each
  the same problem+json as under gunicorn; a TLS key granian cannot read is refused before the
  CA is opened, naming PKCS#8;
- concurrent issuance from both workers: every certificate handed out stored and named in
  exactly one audit record, and the audit log verifies;
- HTTPS with an encrypted key (passphrase from a file) and mutual TLS: no client certificate, or
  one from another CA, and the handshake fails; the right one issues;
- /health, /ready and /metrics answer; SIGHUP serves a renewed TLS certificate and key without
  a restart; SIGTERM stops the server and its workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench._common import stop_group
from sscard import httpsig
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from tests.ca.test_issuance_http_load import PATH, Rig, _post, _rig

# the same load test, run here against this module's granian-served CA (its fixtures)
from tests.ca.test_issuance_http_load import (
    test_concurrent_issuance_from_two_workers_is_stored_and_audited as test_concurrent_issuance_from_two_workers_is_stored_and_audited,  # noqa: E501
)
from tests.ca.test_ocsp_granian import _children
from tests.ca.test_service_cli import SSCARD, free_port
from tests.deploy.tlsfiles import TlsFiles, make_foreign_client, make_tls_files

PROBLEM = "application/problem+json"


def _start(rig: Rig, log: Path, port: int, *extra: str,
           verify: str | bool = True, cert: tuple[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [SSCARD, "--home", str(rig.home), "ca", "serve", "--server", "granian", "--port",
             str(port), "--workers", "2", "--threads", "4", "--audit-db", rig.db_url, *extra],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    scheme = "https" if "--tls-cert" in extra else "http"
    deadline = time.monotonic() + 90
    while True:
        try:  # every worker up: /ready answered on four fresh connections
            if all(requests.get(f"{scheme}://127.0.0.1:{port}/ready", timeout=5, verify=verify,
                                cert=cert, headers={"Connection": "close"}).status_code == 200
                   for _ in range(4)):
                return proc
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_group(proc)
            raise AssertionError(f"ca serve --server granian did not start: "
                                 f"{log.read_text()[-2000:]}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


@pytest.fixture
def rig(tmp_path: Path, database_url: str) -> Rig:
    """A CA on SQLite and on PostgreSQL (``tests/ca/conftest.py``), the audit log in it."""
    return _rig(tmp_path, database_url)


@pytest.fixture
def served(rig: Rig, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = _start(rig, tmp_path / "serve.log", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc)


def _problem(answer: requests.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith(PROBLEM)
    assert answer.json()["code"] == code, answer.text


@pytest.mark.timeout(600)
def test_unsigned_unknown_caller_and_replay_are_refused(rig: Rig, served: str) -> None:
    unsigned = requests.post(served + PATH, data=rig.body, timeout=60,
                             headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.headers["Content-Type"].startswith(PROBLEM)
    # a well-signed request from a certificate the CA issued, but to no principal
    key = SoftwareKey.generate("ec-p256")
    csr = CsrBuilder().subject(parse_name("CN=not-a-principal,C=CN")).sign(key)
    from ca.authority import CertificateAuthority
    from sscard.audit import AuditLog

    with CertificateAuthority.open(rig.home, database_url=rig.db_url,
                                   audit=AuditLog.open(rig.db_url)) as authority:
        stranger = authority.issue_from_csr(csr.dump(), "service").certificate
    other = httpsig.RequestSigner(key, stranger)
    refused = _post(rig, served, other.headers("POST", PATH, "", rig.body))
    assert refused.status_code in (401, 403), refused.text
    assert refused.headers["Content-Type"].startswith(PROBLEM)
    # the same signed request twice: issued once, then refused as a replay
    headers = rig.signer.headers("POST", PATH, "", rig.body)
    assert _post(rig, served, headers).status_code == 201
    _problem(_post(rig, served, headers), 401, "replayed_request")
    # a body the signature does not cover
    tampered = json.dumps({"profile": "business-system", "csr": "x"}).encode()
    assert _post(rig, served, rig.signer.headers("POST", PATH, "", rig.body),
                 tampered).status_code == 401
    # too large a body: refused by the same Flask limit as under gunicorn
    huge = b"{" + b" " * (8 << 20) + b"}"
    too_large = _post(rig, served, rig.signer.headers("POST", PATH, "", huge), huge)
    _problem(too_large, 413, "too_large")




@pytest.fixture
def sqlite_rig(tmp_path: Path) -> Rig:
    return _rig(tmp_path, f"sqlite:///{tmp_path / 'ca.db'}")


def _tls_args(tls: TlsFiles, client_ca: bool = True) -> list[str]:
    args = ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key),
            "--tls-key-passphrase-file", str(tls.server_passphrase)]
    return args + (["--tls-client-ca", str(tls.ca)] if client_ca else [])


@pytest.mark.timeout(600)
def test_mutual_tls_requires_a_client_certificate_of_the_given_ca(
        sqlite_rig: Rig, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    _, foreign = make_foreign_client(tmp_path / "foreign")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    proc = _start(sqlite_rig, tmp_path / "serve.log", port, *_tls_args(tls),
                  verify=str(tls.ca), cert=tls.client_pair)
    try:
        for cert in (None, foreign):
            with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
                requests.get(f"{url}/ready", verify=str(tls.ca), cert=cert, timeout=10)
        body = sqlite_rig.body
        answer = requests.post(url + PATH, data=body, timeout=60, verify=str(tls.ca),
                               cert=tls.client_pair, headers={
                                   **sqlite_rig.signer.headers("POST", PATH, "", body),
                                   "Content-Type": "application/json"})
        assert answer.status_code == 201, answer.text
    finally:
        stop_group(proc)
    assert "tls key passphrase" not in (tmp_path / "serve.log").read_text()


@pytest.mark.timeout(600)
def test_bad_tls_files_are_refused_before_serving(sqlite_rig: Rig, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    tls = make_tls_files(tmp_path / "tls")
    other = tmp_path / "other.key"  # a key that is not the certificate's
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    for key, passphrase in ((other, None), (tls.server_key, None), (tls.server_key, wrong)):
        args = ["--tls-key-passphrase-file", str(passphrase)] if passphrase else []
        done = subprocess.run(
            [SSCARD, "--home", str(sqlite_rig.home), "ca", "serve", "--server", "granian",
             "--port", str(free_port()), "--tls-cert", str(tls.server_cert), "--tls-key",
             str(key), *args], capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL)
        assert done.returncode == 2, done.stderr
        assert "TLS: cannot use certificate" in done.stderr and "serving CA" not in done.stderr


@pytest.mark.timeout(600)
def test_sigterm_stops_the_server_and_its_workers(sqlite_rig: Rig, tmp_path: Path) -> None:
    port = free_port()
    proc = _start(sqlite_rig, tmp_path / "serve.log", port)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert children, "no worker processes"
    try:
        assert _post(sqlite_rig, f"http://127.0.0.1:{port}").status_code == 201
        # the operators' endpoints, as under gunicorn
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["status"] \
            == "ok"
        assert requests.get(f"http://127.0.0.1:{port}/ready", timeout=10).status_code == 200
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "sscard_http_requests_total" in metrics
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()[-2000:]
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or \
                "zombie" in Path(f"/proc/{pid}/status").read_text().lower(), pid
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        stop_group(proc)


@pytest.mark.timeout(600)
def test_sighup_serves_a_renewed_certificate_and_key(sqlite_rig: Rig, tmp_path: Path) -> None:
    """``systemctl reload``: the master rereads the key (into its memory file) and granian
    respawns the workers, which read both files again: no restart."""
    import shutil

    tls = make_tls_files(tmp_path / "tls")
    live = tmp_path / "live"
    live.mkdir()
    for name, source in (("server.pem", tls.server_cert), ("server.key", tls.server_key),
                         ("server.pass", tls.server_passphrase)):
        shutil.copy(source, live / name)
    (live / "server.pass").chmod(0o600)
    port = free_port()
    url = f"https://127.0.0.1:{port}/ready"
    proc = _start(sqlite_rig, tmp_path / "serve.log", port, "--tls-cert",
                  str(live / "server.pem"), "--tls-key", str(live / "server.key"),
                  "--tls-key-passphrase-file", str(live / "server.pass"), verify=str(tls.ca))
    try:
        renewed = make_tls_files(tmp_path / "renewed")  # another CA and key, same passphrase
        shutil.copy(renewed.server_cert, live / "server.pem")
        shutil.copy(renewed.server_key, live / "server.key")
        old_workers = _children(proc.pid)
        assert len(old_workers) >= 2, (tmp_path / "serve.log").read_text()[-3000:]
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 90
        # every worker that held the old certificate has gone, and two new ones serve: before
        # this, the kernel can hand any run of fresh connections to an old worker still
        # finishing, which failed CI once after twenty renewed answers in a row
        while any(_alive(pid) for pid in old_workers) or len(_children(proc.pid)) < 2:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        while True:
            try:
                if requests.get(url, timeout=5, verify=str(renewed.ca),
                                headers={"Connection": "close"}).ok:
                    break
            except requests.exceptions.SSLError:
                pass  # an old worker, still finishing
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.3)
        # then every worker (granian respawns them a few seconds apart, and the kernel may
        # hand a run of connections to one of them): the renewed certificate on twenty fresh
        # connections in a row, after which the old CA's is refused
        served_renewed = 0
        while served_renewed < 20:
            try:
                requests.get(url, timeout=5, verify=str(renewed.ca),
                             headers={"Connection": "close"})
                served_renewed += 1
            except requests.exceptions.SSLError:
                served_renewed = 0
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, timeout=5, verify=str(tls.ca), headers={"Connection": "close"})
        assert proc.poll() is None
        assert requests.get(url, timeout=5, verify=str(renewed.ca)).ok
    finally:
        stop_group(proc)
