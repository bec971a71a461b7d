"""``sscard ca ocsp-serve``: the CA's OCSP responder alone, plain HTTP under granian with two
worker processes, asked by ``openssl ocsp`` (the independent client) and by hand: nonce POST,
RFC 5019 GET, good, revoked and unknown; malformed and oversized requests; revocation seen by
the connections of both workers; SIGTERM stops the server and its workers."""

from __future__ import annotations

import base64
import http.client
import os
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from asn1crypto import ocsp as asn1ocsp
from asn1crypto import x509 as asn1x509

from ca.ocsp_publish import canonical_request
from ca.service import MAX_PROTOCOL_BODY
from sscard.x509.pem import pem_blocks
from tests.ca.test_ocsp_load_spread import _owner_of_sockets, _server_socket_inodes
from tests.ca.test_service_cli import (
    SSCARD,
    Running,
    _start,
    free_port,
    leaf_serial,
    openssl,
    openssl_ocsp,
    serve,
    sscard,
)

OCSP_REQUEST = {"Content-Type": "application/ocsp-request"}
CLIENTS = 16


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from serve(tmp_path_factory.mktemp("ocsp-granian"), "ec-p256", "ocsp-serve",
                     "/health")


def _issuer(running: Running) -> asn1x509.Certificate:
    return asn1x509.Certificate.load(pem_blocks(running.files["issuer"].read_bytes())[0][1])


def _status(der: bytes) -> str:
    response = asn1ocsp.OCSPResponse.load(der)
    if response["response_status"].native != "successful":
        return str(response["response_status"].native)
    basic = response["response_bytes"]["response"].parsed
    return str(basic["tbs_response_data"]["responses"][0]["cert_status"].name)


def _get_path(request: bytes) -> str:
    return "/ocsp/" + urllib.parse.quote(base64.b64encode(request).decode(), safe="")


def test_only_ocsp_and_the_operator_endpoints_are_served(service: Running) -> None:
    assert requests.get(f"{service.url}/health", timeout=10).json()["status"] == "ok"
    assert requests.get(f"{service.url}/ready", timeout=10).status_code == 200
    for path in ("/certs/chain.pem", "/crl/issuing.crl", "/api/v1/certificates", "/tsa"):
        assert requests.get(f"{service.url}{path}", timeout=10).status_code == 404, path


def test_openssl_ocsp_nonce_post_good_and_unknown(service: Running) -> None:
    answer = openssl_ocsp(service)  # openssl sends a nonce and checks it comes back
    assert answer.returncode == 0, answer.stderr
    assert "Response verify OK" in answer.stderr
    assert f"{service.files['leaf']}: good" in answer.stdout
    files = service.files
    unknown = subprocess.run(
        [openssl(), "ocsp", "-issuer", str(files["issuer"]), "-serial", "0x5eed5eed5eed",
         "-url", f"{service.url}/ocsp", "-CAfile", str(files["chain"])],
        capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 0, unknown.stderr
    assert "Response verify OK" in unknown.stderr
    assert "0x5eed5eed5eed: unknown" in unknown.stdout


def test_get_answer_verified_by_openssl(service: Running, tmp_path: Path) -> None:
    request = canonical_request(_issuer(service), int(leaf_serial(service), 16))
    reply = requests.get(f"{service.url}{_get_path(request)}", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/ocsp-response"
    assert reply.headers["Cache-Control"].startswith("max-age=")
    (tmp_path / "answer.der").write_bytes(reply.content)
    files = service.files
    checked = subprocess.run(
        [openssl(), "ocsp", "-respin", str(tmp_path / "answer.der"), "-issuer",
         str(files["issuer"]), "-cert", str(files["leaf"]), "-CAfile", str(files["chain"]),
         "-no_nonce"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "Response verify OK" in checked.stderr
    assert f"{files['leaf']}: good" in checked.stdout


def test_another_issuers_certificate_is_unauthorized(service: Running) -> None:
    files = service.files  # the issuing CA's certificate as if issued by itself: not ours
    result = subprocess.run(
        [openssl(), "ocsp", "-issuer", str(files["issuer"]), "-cert", str(files["issuer"]),
         "-url", f"{service.url}/ocsp", "-CAfile", str(files["chain"])],
        capture_output=True, text=True, timeout=60)
    assert "unauthorized" in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize("body", [b"", b"\x30\x00", b"garbage", os.urandom(300),
                                  b"\x30" * (MAX_PROTOCOL_BODY + 1),
                                  b"\x30\x84\x7f\xff\xff\xff", b"\x30" * (16 << 20)])
def test_malformed_and_oversized_posts_get_malformed_request(service: Running,
                                                             body: bytes) -> None:
    reply = requests.post(f"{service.url}/ocsp", data=body, headers=OCSP_REQUEST, timeout=30)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/ocsp-response"
    assert reply.headers["Cache-Control"] == "no-cache, no-store"
    assert _status(reply.content) == "malformed_request"


def test_chunked_post_and_head_are_answered(service: Running) -> None:
    request = canonical_request(_issuer(service), int(leaf_serial(service), 16))
    chunked = requests.post(f"{service.url}/ocsp", data=iter([request[:10], request[10:]]),
                            headers=OCSP_REQUEST, timeout=30)  # no Content-Length
    assert _status(chunked.content) in ("good", "revoked")
    too_long = requests.post(f"{service.url}/ocsp", headers=OCSP_REQUEST, timeout=30,
                             data=iter([b"\x30" * 4096] * (MAX_PROTOCOL_BODY // 4096 + 1)))
    assert _status(too_long.content) == "malformed_request"
    head = requests.head(f"{service.url}{_get_path(request)}", timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Type"] == "application/ocsp-response"


def test_malformed_and_oversized_gets_get_malformed_request(service: Running) -> None:
    for path in ("/ocsp/not-base64!", "/ocsp/" + base64.b64encode(b"\x30\x00").decode(),
                 "/ocsp/" + "A" * (MAX_PROTOCOL_BODY + 4)):
        reply = requests.get(f"{service.url}{path}", timeout=30)
        assert reply.status_code in (200, 414, 431), path  # a too-long URL may stop at HTTP
        if reply.status_code == 200:
            assert _status(reply.content) == "malformed_request", path[:40]


def _workers_of(connections: list[http.client.HTTPConnection], port: int) -> list[int]:
    client_ports = [conn.sock.getsockname()[1] for conn in connections]
    server_sockets = _server_socket_inodes(port)
    owners = _owner_of_sockets([int(p.name) for p in Path("/proc").iterdir()
                                if p.name.isdigit()])
    return [owners[server_sockets[p]] for p in client_ports]


def _ask_all(connections: list[http.client.HTTPConnection], method: str, path: str,
             body: bytes | None) -> list[str]:
    statuses = []
    for conn in connections:
        conn.request(method, path, body=body, headers=OCSP_REQUEST if body else {})
        response = conn.getresponse()
        assert response.status == 200
        statuses.append(_status(response.read()))
    return statuses


def test_revocation_is_seen_by_the_connections_of_both_workers(service: Running) -> None:
    issuer = _issuer(service)
    serial = int(leaf_serial(service), 16)
    plain = canonical_request(issuer, serial)
    port = int(service.url.rsplit(":", 1)[1])
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                   for _ in range(CLIENTS)]
    try:
        for conn in connections:  # all at once, as a pool of clients opens them
            conn.connect()
        # warm every worker's caches: the GET answer and the status behind nonce POSTs
        for _ in range(2):
            assert set(_ask_all(connections, "GET", _get_path(plain), None)) == {"good"}
            assert set(_ask_all(connections, "POST", "/ocsp", plain)) == {"good"}
        workers = _workers_of(connections, port)
        assert len(set(workers)) == 2, f"all {CLIENTS} connections on one worker"

        sscard(service.home, "ca", "revoke", f"{serial:x}", "--reason", "keyCompromise")
        # each worker polls the CA's revocation generation at most every 0.2 s
        # (ServiceConfig.revocation_check_interval): after that, every answer says revoked
        time.sleep(0.5)
        assert set(_ask_all(connections, "GET", _get_path(plain), None)) == {"revoked"}
        assert set(_ask_all(connections, "POST", "/ocsp", plain)) == {"revoked"}
        assert _workers_of(connections, port) == workers  # the same connections, both workers
    finally:
        for conn in connections:
            conn.close()
    after = openssl_ocsp(service)
    assert f"{service.files['leaf']}: revoked" in after.stdout, after.stderr
    assert "Reason: keyCompromise" in after.stdout


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_sigterm_stops_the_server_and_its_workers(service: Running, tmp_path: Path) -> None:
    port = free_port()
    proc = _start(service.home, port, tmp_path / "serve.log", "ocsp-serve", "/health")
    try:
        workers = _children(proc.pid)
        assert len(workers) >= 2, (tmp_path / "serve.log").read_text()
        os.kill(proc.pid, signal.SIGTERM)  # the main process only, as systemd's stop does
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(Path(f"/proc/{w}").exists() for w in workers)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sigterm_while_the_workers_start_stops_at_once(service: Running, tmp_path: Path) -> None:
    """A stop that comes while the workers are still opening the CA (they inherit the main
    process's signal handlers until granian installs theirs) ends them, rather than waiting
    for the kill after the graceful timeout (30 s)."""
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([SSCARD, "--home", str(service.home), "ca", "ocsp-serve",
                                 "--port", str(free_port())], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = _children(proc.pid)
        assert len(workers) >= 2, log.read_text()
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        assert time.monotonic() - started < 15, log.read_text()
        assert not any(Path(f"/proc/{w}").exists() for w in workers)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
