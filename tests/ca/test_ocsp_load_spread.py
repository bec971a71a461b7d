"""Load spread across worker processes: long-lived keep-alive clients of ``sscard ca serve
--workers 2`` must not all land on one worker (each worker binds its own SO_REUSEPORT socket,
``sscard.serving``). Which worker holds a connection is read from the kernel: the server side of
each client connection in /proc/net/tcp, and the worker whose file descriptors hold that socket."""

from __future__ import annotations

import base64
import http.client
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1x509

from ca.ocsp_publish import canonical_request
from sscard.x509.pem import pem_blocks
from tests.ca.test_service_cli import Running, leaf_serial, serve

CLIENTS = 16


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from serve(tmp_path_factory.mktemp("spread"), "ec-p256")


def _server_socket_inodes(server_port: int) -> dict[int, int]:
    """client port -> inode of the server's socket of that established connection."""
    found: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if state == "01" and int(local.split(":")[1], 16) == server_port:
            found[int(remote.split(":")[1], 16)] = inode
    return found


def _owner_of_sockets(pids: list[int]) -> dict[int, int]:
    """socket inode -> the pid that holds it."""
    owners: dict[int, int] = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = fd.readlink().name
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[8:-1])] = pid
    return owners


def _listening_sockets(port: int) -> set[int]:
    """Inodes of the sockets listening on ``port``."""
    return {int(f[9]) for f in (line.split() for line in
                                Path("/proc/net/tcp").read_text().splitlines()[1:])
            if f[3] == "0A" and int(f[1].split(":")[1], 16) == port}


def test_keep_alive_clients_are_spread_over_both_workers(service: Running) -> None:
    port = int(service.url.rsplit(":", 1)[1])
    # the service answers as soon as one worker listens: connections opened before the second
    # binds its socket can only go to the first, so wait until both listen (or fail below)
    deadline = time.monotonic() + 30
    while len(_listening_sockets(port)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    issuer = asn1x509.Certificate.load(pem_blocks(service.files["issuer"].read_bytes())[0][1])
    request = canonical_request(issuer, int(leaf_serial(service), 16))
    path = "/ocsp/" + urllib.parse.quote(base64.b64encode(request).decode(), safe="")
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                   for _ in range(CLIENTS)]
    try:
        for conn in connections:  # all at once, as a pool of clients (or wrk) opens them
            conn.connect()
        for _ in range(3):  # several requests on each kept-alive connection
            for conn in connections:
                conn.request("GET", path)
                response = conn.getresponse()
                assert response.status == 200 and response.read()
                assert response.getheader("Connection", "").lower() != "close"
        client_ports = [conn.sock.getsockname()[1] for conn in connections]
        server_sockets = _server_socket_inodes(port)
        owners = _owner_of_sockets([int(p.name) for p in Path("/proc").iterdir()
                                    if p.name.isdigit()])
        workers = [owners[server_sockets[p]] for p in client_ports]
    finally:
        for conn in connections:
            conn.close()
    per_worker = {pid: workers.count(pid) for pid in set(workers)}
    assert len(per_worker) == 2, f"all {CLIENTS} connections on one worker: {per_worker}"
    # the mechanism: one listening socket per worker (a single shared one let a busy worker
    # take every connection of a burst while the other idled)
    listening = _listening_sockets(port)
    assert len(listening) == 2, f"{len(listening)} listening sockets for 2 workers"
    assert {owners[inode] for inode in listening} == set(per_worker)

