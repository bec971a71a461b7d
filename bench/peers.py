"""The project's HTTP services beside the peers users pick instead, measured in one run (issue 16).

    python bench/peers.py [--seconds 5] [--rounds 3] [--connections 32] [--workers 2]

Every server runs on 127.0.0.1 on a free port, at the same time, and ``wrk`` (a second process,
two threads, keep-alive connections) drives one of them at a time, in alternating rounds (ours
first in even rounds, the reference first in odd ones) so that load on the shared machine falls
on both alike. Each row prints

    <what>: ours=<n>/s reference=<n>/s ratio=<r>

(the median round of each) and under it the p50/p99 latency and the server CPU per answer (the
utime+stime of the server's whole process tree, from /proc/<pid>/stat, over the requests wrk
counted), and for ours how that CPU was split over the worker processes.

Rows (the references are Debian packages: nginx, golang-cfssl, openssl, wrk):

- OCSP pre-signed GET through the shipped nginx configuration (deploy/nginx/ocsp.conf, files
  written by ``sscard ca ocsp-publish``) vs nginx serving the same DER as a plain static file;
- OCSP cached GET from ``sscard ca ocsp-serve`` (granian; P-256 and SM2) vs cfssl
  ``ocspserve`` answering the same pre-signed P-256 response from its file;
- OCSP nonce POST from ``sscard ca ocsp-serve``, P-256 (a fresh signature each) vs
  ``openssl ocsp -multi <workers>`` with the same responder key, certificate and request;
- OCSP nonce POST, SM2 vs the raw SM2 sign rate of ``openssl speed -multi <workers>``;
- the server's share: the same OCSP under ``ocsp-serve`` (granian) vs ``sscard ca serve``
  (gunicorn gthread), and one granian process with threads vs <workers> processes;
- issuance over HTTP, from bench/peers_issuance.py when it is there;
- CLI start-up: ``sscard --help`` vs ``python -c pass`` (median of 10, bench/cli.py).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from asn1crypto import ocsp as asn1ocsp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import DidNotStart, exit_on_sigterm, figure, openssl_speed, wait_until_up
from bench.ca_protocols import _config, _lua_post, _request
from ca.authority import CertificateAuthority
from ca.ocsp_publish import request_paths
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem

ROOT = Path(__file__).resolve().parent.parent
SSCARD = str(Path(sys.executable).with_name("sscard"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OCSP_REQUEST = "application/ocsp-request"


def need(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise SystemExit(f"{program} not found (Debian package {package}; "
                         "scripts/system-deps.sh installs it)")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- server processes and their CPU -----------------------------------------------------


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (gunicorn, nginx and openssl workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Server:
    """One server process (and its workers) started for the run."""

    name: str
    argv: list[str]
    ready_url: str
    log: Path
    ready: Callable[[requests.Response], bool] = lambda r: r.status_code < 500
    #: POSTed as an OCSP request to ``ready_url`` instead of a GET (the openssl responder)
    probe_body: bytes | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.env,
                                         # its own process group, but not a session leader:
                                         # openssl ocsp -multi fails its setpgid() then
                                         stdin=subprocess.DEVNULL, process_group=0)
        try:
            wait_until_up(self.name, self._answers, self.proc, self.log, timeout=90,
                          interval=0.2)
        except DidNotStart as exc:
            raise SystemExit(str(exc)) from None

    def _answers(self) -> bool:
        with contextlib.suppress(requests.RequestException):
            answer = (requests.get(self.ready_url, timeout=2) if self.probe_body is None
                      else requests.post(self.ready_url, data=self.probe_body, timeout=2,
                                         headers={"Content-Type": OCSP_REQUEST}))
            return self.ready(answer)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def cpu(self) -> dict[int, float]:
        assert self.proc is not None
        return {pid: cpu_seconds(pid) for pid in process_tree(self.proc.pid)}


# -- wrk --------------------------------------------------------------------------------


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Round:
    rate: float
    requests: int
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU per answer
    #: CPU seconds per process of the tree during the round (the workers' share)
    split: list[float] = field(default_factory=list)


def wrk(url: str, seconds: float, connections: int, script: Path | None = None) -> str:
    args = [need("wrk", "wrk"), "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--latency"]
    if script is not None:
        args += ["-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if failed:
        raise SystemExit(f"{failed[1]} failed responses from {url}:\n{out}")
    # timeouts are slow answers (a loaded machine), counted as not answered; not failures
    if errors and re.search(r"(read|write) [1-9]", errors[0]):
        raise SystemExit(f"socket errors against {url}:\n{out}")
    return out


def measure(server: Server, url: str, seconds: float, connections: int,
            script: Path | None = None) -> Round:
    before = server.cpu()
    out = wrk(url, seconds, connections, script)
    after = server.cpu()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    if not (rate and total and p50 and p99):
        raise SystemExit(f"unreadable wrk output:\n{out}")
    split = sorted((after[p] - before.get(p, 0.0) for p in after), reverse=True)
    count = int(total[1])
    if count == 0:
        raise SystemExit(f"{server.name} answered nothing in {seconds} s:\n{out}")
    return Round(float(rate[1]), count, float(p50[1]) * _UNITS[p50[2]],
                 float(p99[1]) * _UNITS[p99[2]], sum(split) / count * 1e6,
                 [s for s in split if s > 0.005])


@dataclass
class Target:
    server: Server
    url: str
    script: Path | None = None
    #: start the server afresh before each round: the openssl 3.0 responder stops accepting
    #: after wrk drops its keep-alive connections at the end of a round
    restart: bool = False

    def run(self, seconds: float, connections: int) -> Round:
        if self.restart:
            self.server.stop()
            self.server.start()
        return measure(self.server, self.url, seconds, connections, self.script)


def _median(rounds: list[Round]) -> Round:
    return sorted(rounds, key=lambda r: r.rate)[len(rounds) // 2]


def _detail(label: str, r: Round, workers: bool) -> str:
    text = (f"    {label}: p50={r.p50_ms:.2f} ms p99={r.p99_ms:.2f} ms "
            f"server CPU {r.cpu_us:.0f} us/answer")
    if workers and len(r.split) > 0:
        total = sum(r.split) or 1.0
        text += " (CPU split over processes: " + "/".join(
            f"{100 * s / total:.0f}%" for s in r.split) + ")"
    return text


def compare(what: str, ours: Target, reference: Target | Callable[[], float], rounds: int,
            seconds: float, connections: int) -> list[str]:
    """Alternating rounds of ours and the reference (a server, or a rate measured afresh in
    each round, such as ``openssl speed``)."""
    mine: list[Round] = []
    theirs: list[Round] = []
    rates: list[float] = []
    for index in range(rounds):
        order = [ours, reference] if index % 2 == 0 else [reference, ours]
        for target in order:
            if isinstance(target, Target):
                (mine if target is ours else theirs).append(target.run(seconds, connections))
            else:
                rates.append(target())
    best = _median(mine)
    if isinstance(reference, Target):
        ref = _median(theirs)
        lines = [figure(what, best.rate, ref.rate), _detail("ours", best, True),
                 _detail("reference", ref, False)]
    else:
        lines = [figure(what, best.rate, sorted(rates)[len(rates) // 2]),
                 _detail("ours", best, True)]
    for line in lines:
        print(line, flush=True)
    return lines


# -- the PKI the servers answer for -----------------------------------------------------


@dataclass
class Pki:
    """A root and issuing CA of one algorithm, a leaf, and its OCSP requests."""

    home: Path
    algorithm: str
    serial: int
    get_request: bytes
    nonce_request: bytes

    @property
    def get_path(self) -> str:
        return urllib.parse.quote(base64.b64encode(self.get_request).decode(), safe="")


def make_pki(base: Path, algorithm: str) -> Pki:
    home = base / f"home-{algorithm}"
    config = base / f"ca-{algorithm}.toml"
    config.write_text(_config(algorithm), encoding="utf-8")
    authority = CertificateAuthority.init(home, config, audit=AuditLog.at_home(home))
    try:
        key = SoftwareKey.generate(algorithm)
        csr = CsrBuilder().subject(parse_name("CN=Bench Leaf,O=人社厅,C=CN")).sign(key)
        serial = authority.issue_from_csr(csr, "business-system").serial
        authority.ocsp_signer()  # made before the workers start
        return Pki(home, algorithm, serial, _request(authority, serial, None),
                   _request(authority, serial, os.urandom(16)))
    finally:
        authority.close()


def export_responder(pki: Pki, directory: Path) -> tuple[Path, Path, Path]:
    """The responder key (unencrypted, owner-only, for ``openssl ocsp`` only), its certificate
    and the issuing CA's certificate, as PEM files."""
    with CertificateAuthority.open(pki.home, None, audit=AuditLog.at_home(pki.home)) as authority:
        signer = authority.ocsp_signer()
        issuer = authority.certificate
    assert isinstance(signer.key, SoftwareKey)
    key_path = directory / "responder.key"
    key_path.touch(mode=0o600)
    key_path.write_bytes(der_to_pem(signer.key.private_key.pkcs8_der(), "PRIVATE KEY"))
    cert_path = directory / "responder.pem"
    cert_path.write_bytes(der_to_pem(signer.certificate.dump(), "CERTIFICATE"))
    issuer_path = directory / "issuing.pem"
    issuer_path.write_bytes(der_to_pem(issuer.dump(), "CERTIFICATE"))
    return key_path, cert_path, issuer_path


def openssl_index(pki: Pki, path: Path) -> None:
    """An ``openssl ca`` index with the leaf as valid (what ``openssl ocsp -index`` reads)."""
    expiry = (datetime.now(UTC) + timedelta(days=365)).strftime("%y%m%d%H%M%SZ")
    path.write_text(f"V\t{expiry}\t\t{pki.serial:X}\tunknown\t/CN=Bench Leaf\n")


def check_ocsp(url: str, body: bytes | None = None) -> bytes:
    """One answer, checked to be a successful OCSP response before it is timed."""
    response = (requests.post(url, data=body, headers={"Content-Type": OCSP_REQUEST}, timeout=10)
                if body is not None else requests.get(url, timeout=10))
    response.raise_for_status()
    status = asn1ocsp.OCSPResponse.load(response.content)["response_status"].native
    if status != "successful":
        raise SystemExit(f"{url} answered {status}")
    return response.content


# -- main -------------------------------------------------------------------------------


def sscard_serve(pki: Pki, workers: int, logs: Path) -> Server:
    port = free_port()
    return Server(f"sscard ca serve ({pki.algorithm})",
                  [SSCARD, "--home", str(pki.home), "ca", "serve", "--port", str(port),
                   "--workers", str(workers), "--no-tsa"],
                  f"http://127.0.0.1:{port}/certs/chain.pem", logs / f"serve-{pki.algorithm}.log",
                  ready=lambda r: r.ok)


def nginx_conf(directory: Path, servers: str, workers: int) -> Path:
    conf = directory / "nginx.conf"
    # run as root, nginx would hand its workers to "nobody", who cannot read a private tmp dir
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    conf.write_text(f"""\
{user}
worker_processes {workers};
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory}/tmp;
    proxy_temp_path {directory}/tmp;
    fastcgi_temp_path {directory}/tmp;
    uwsgi_temp_path {directory}/tmp;
    scgi_temp_path {directory}/tmp;
    types {{ application/ocsp-response der; }}
{servers}
}}
""")
    (directory / "tmp").mkdir(exist_ok=True)
    return conf


SHIPPED_NGINX_SITE = ROOT / "deploy" / "nginx" / "ocsp.conf"


def shipped_nginx_site(listen: str, root: Path, upstream: str) -> str:
    """deploy/nginx/ocsp.conf with its three deployment values changed, and nothing else."""
    text = SHIPPED_NGINX_SITE.read_text()
    for old, new in (("server 127.0.0.1:8081;", f"server {upstream};"),
                     ("listen 80;", f"listen {listen};"),
                     ("root /var/lib/sscard/ocsp-edge;", f"root {root};")):
        if text.count(old) != 1:
            raise ValueError(f"{old!r} is not in {SHIPPED_NGINX_SITE} exactly once")
        text = text.replace(old, new)
    return text


def publish_edge(pki: Pki, directory: Path) -> None:
    """The pre-signed answers, as ``sscard ca ocsp-publish`` writes them."""
    from ca.ocsp_publish import EdgePublisher

    with CertificateAuthority.open(pki.home, None, audit=AuditLog.at_home(pki.home)) as ca:
        EdgePublisher(ca, directory).publish_all()


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[None]:
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


def ocsp_serve(pki: Pki, workers: int, logs: Path, threads: int = 2) -> Server:
    """``sscard ca ocsp-serve``: the OCSP responder alone, under granian."""
    port = free_port()
    return Server(f"sscard ca ocsp-serve ({pki.algorithm}, {workers}x{threads})",
                  [SSCARD, "--home", str(pki.home), "ca", "ocsp-serve", "--port", str(port),
                   "--workers", str(workers), "--threads", str(threads)],
                  f"http://127.0.0.1:{port}/health",
                  logs / f"ocsp-serve-{pki.algorithm}-{workers}x{threads}.log",
                  ready=lambda r: r.ok)


def server_rows(pki: Pki, ours: Server, gunicorn: Server, workers: int, base: Path,
                rounds: int, seconds: float, connections: int) -> list[str]:
    """What the server costs: the same OCSP under ``ocsp-serve`` (granian) and under ``ca serve``
    (gunicorn gthread); and one granian process with threads against ``workers`` processes."""
    lines: list[str] = []
    ours_base = ours.ready_url.rsplit("/health", 1)[0]
    gunicorn_base = gunicorn.ready_url.rsplit("/certs", 1)[0]
    post = base / f"post-{pki.algorithm}-servers.lua"
    post.write_text(_lua_post(pki.nonce_request, OCSP_REQUEST))
    shape = f"{workers} processes, {connections} keep-alive connections"
    lines += compare(f"OCSP cached GET, {pki.algorithm} ({shape}), ocsp-serve (granian) "
                     "vs ca serve (gunicorn gthread)",
                     Target(ours, f"{ours_base}/ocsp/{pki.get_path}"),
                     Target(gunicorn, f"{gunicorn_base}/ocsp/{pki.get_path}"),
                     rounds, seconds, connections)
    lines += compare(f"OCSP nonce POST, {pki.algorithm} ({shape}), ocsp-serve (granian) "
                     "vs ca serve (gunicorn gthread)",
                     Target(ours, f"{ours_base}/ocsp", post),
                     Target(gunicorn, f"{gunicorn_base}/ocsp", post),
                     rounds, seconds, connections)
    threaded = ocsp_serve(pki, 1, base / "logs", threads=2 * workers)
    with running([threaded]):
        threaded_base = threaded.ready_url.rsplit("/health", 1)[0]
        check_ocsp(f"{threaded_base}/ocsp", pki.nonce_request)
        lines += compare(f"OCSP nonce POST, {pki.algorithm}, ocsp-serve with 1 process x "
                         f"{2 * workers} threads vs {workers} processes x 2 threads",
                         Target(threaded, f"{threaded_base}/ocsp", post),
                         Target(ours, f"{ours_base}/ocsp", post),
                         rounds, seconds, connections)
    return lines


def issuance_rows(seconds: float) -> list[str]:
    try:
        peers_issuance = importlib.import_module("bench.peers_issuance")
    except ModuleNotFoundError:
        line = "issuance rows: not available (bench/peers_issuance.py is not in this checkout)"
        print(line, flush=True)
        return [line]
    # rows() has printed each row with its latency and CPU lines as it measured it
    return [f"{row.what}: ours={row.ours:.0f}/s reference={row.reference:.0f}/s "
            f"ratio={row.ratio:.2f}" for row in peers_issuance.rows(seconds)]


def startup_rows(runs: int = 10) -> list[str]:
    """CLI start-up (issue 16's last row): ``sscard --help`` against ``python -c pass``, median
    of ``runs``, measured by bench/cli.py in this run."""
    from bench.cli import measure

    return measure(runs, {"CLI start-up, sscard --help (median of "
                          f"{runs}) vs python -c pass": ["--help"]})


def run(seconds: float, rounds: int, connections: int, workers: int,
        issuance: bool = True) -> list[str]:
    nginx = need("nginx", "nginx")
    cfssl = need("cfssl", "golang-cfssl")
    openssl = need("openssl", "openssl")
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        base = Path(tmp)
        logs = base / "logs"
        logs.mkdir()
        p256, sm2 = make_pki(base, "ec-p256"), make_pki(base, "sm2")
        ours_p256, ours_sm2 = ocsp_serve(p256, workers, logs), ocsp_serve(sm2, workers, logs)
        gunicorn_p256 = sscard_serve(p256, workers, logs)

        with running([ours_p256, ours_sm2, gunicorn_p256]):
            p256_base = ours_p256.ready_url.rsplit("/health", 1)[0]
            sm2_base = ours_sm2.ready_url.rsplit("/health", 1)[0]
            presigned = check_ocsp(f"{p256_base}/ocsp/{p256.get_path}")
            check_ocsp(f"{sm2_base}/ocsp/{sm2.get_path}")
            check_ocsp(f"{p256_base}/ocsp", p256.nonce_request)
            check_ocsp(f"{sm2_base}/ocsp", sm2.nonce_request)

            # the peers: nginx (static file), cfssl ocspserve, openssl ocsp
            edge = base / "edge"
            publish_edge(p256, edge)
            # named as ocsp-publish names it: a base64 text ending in "/" is a file "_" in
            # that directory (pathlib would drop the "/" and name the directory instead)
            edge_answer = edge / request_paths(p256.get_request)[0]
            static = base / "static"
            static.mkdir()
            (static / "response.der").write_bytes(edge_answer.read_bytes())
            nginx_port, edge_port = free_port(), free_port()
            nginx_dir = base / "nginx"
            nginx_dir.mkdir()
            edge_site = shipped_nginx_site(f"127.0.0.1:{edge_port}", edge,
                                           p256_base.removeprefix("http://"))
            conf = nginx_conf(nginx_dir, f"""\
    server {{
        listen 127.0.0.1:{nginx_port};
        root {static};
        location / {{ }}
    }}
{edge_site}""", workers)
            nginx_server = Server("nginx", [nginx, "-c", str(conf), "-p", str(nginx_dir)],
                                  f"http://127.0.0.1:{nginx_port}/response.der",
                                  logs / "nginx.log", ready=lambda r: r.ok)
            responses = base / "cfssl-responses"
            responses.write_text(base64.b64encode(presigned).decode() + "\n")
            cfssl_port = free_port()
            cfssl_server = Server("cfssl ocspserve",
                                  [cfssl, "ocspserve", "-address", "127.0.0.1",
                                   "-port", str(cfssl_port), "-responses", str(responses),
                                   "-loglevel", "5"],
                                  f"http://127.0.0.1:{cfssl_port}/", logs / "cfssl.log",
                                  probe_body=p256.get_request, ready=lambda r: r.ok)
            key, cert, issuer = export_responder(p256, base)
            index = base / "index.txt"
            openssl_index(p256, index)
            openssl_port = free_port()
            openssl_server = Server(f"openssl ocsp -multi {workers}",
                                    [openssl, "ocsp", "-index", str(index),
                                     "-port", str(openssl_port), "-rsigner", str(cert),
                                     "-rkey", str(key), "-CA", str(issuer), "-nmin", "60",
                                     *(["-multi", str(workers)] if workers > 1 else [])],
                                    f"http://127.0.0.1:{openssl_port}/", logs / "openssl.log",
                                    ready=lambda r: r.ok, probe_body=p256.nonce_request)
            with running([nginx_server, cfssl_server, openssl_server]):
                # Debian's cfssl (2016) cannot decode RFC 5019 GET paths (it keeps the leading
                # "/" and turns "+" into " "), so it is asked by POST, for the same request
                cfssl_url = f"http://127.0.0.1:{cfssl_port}/"
                if check_ocsp(cfssl_url, p256.get_request) != presigned:
                    raise SystemExit("cfssl ocspserve does not serve the pre-signed response")
                edge_url = f"http://127.0.0.1:{edge_port}/ocsp/{p256.get_path}"
                if check_ocsp(edge_url) != edge_answer.read_bytes():
                    raise SystemExit(f"nginx does not serve the published answer {edge_answer}"
                                     f" at {edge_url}")
                openssl_url = f"http://127.0.0.1:{openssl_port}/"
                check_ocsp(openssl_url, p256.nonce_request)

                post_p256 = base / "post-p256.lua"
                post_p256.write_text(_lua_post(p256.nonce_request, OCSP_REQUEST))
                post_sm2 = base / "post-sm2.lua"
                post_sm2.write_text(_lua_post(sm2.nonce_request, OCSP_REQUEST))
                get_p256 = base / "get-p256.lua"
                get_p256.write_text(_lua_post(p256.get_request, OCSP_REQUEST))
                cfssl_target = Target(cfssl_server, cfssl_url, get_p256)
                shape = f"{workers} processes, {connections} keep-alive connections"

                lines += compare(
                    f"OCSP pre-signed GET through deploy/nginx/ocsp.conf, P-256 ({shape}) "
                    "vs nginx serving the same DER as a static file",
                    Target(nginx_server, edge_url),
                    Target(nginx_server, f"http://127.0.0.1:{nginx_port}/response.der"),
                    rounds, seconds, connections)
                lines += compare(
                    f"OCSP cached GET, P-256 ({shape}), sscard ca ocsp-serve vs cfssl ocspserve "
                    "(POST)",
                    Target(ours_p256, f"{p256_base}/ocsp/{p256.get_path}"), cfssl_target,
                    rounds, seconds, connections)
                lines += compare(
                    f"OCSP cached GET, SM2 ({shape}), sscard ca ocsp-serve vs cfssl ocspserve "
                    "(P-256, POST)",
                    Target(ours_sm2, f"{sm2_base}/ocsp/{sm2.get_path}"), cfssl_target,
                    rounds, seconds, connections)
                lines += compare(
                    f"OCSP nonce POST, P-256 ({shape}), sscard ca ocsp-serve vs openssl ocsp "
                    f"-multi {workers}",
                    Target(ours_p256, f"{p256_base}/ocsp", post_p256),
                    Target(openssl_server, openssl_url, post_p256, restart=True),
                    rounds, seconds, connections)

                def sign_rate() -> float:
                    return openssl_speed(["sm2"], seconds=max(1, round(seconds)),
                                         processes=workers)["sm2"][0]

                lines += compare(
                    f"OCSP nonce POST, SM2 ({shape}), sscard ca ocsp-serve vs raw SM2 sign rate "
                    f"(openssl speed -multi {workers})",
                    Target(ours_sm2, f"{sm2_base}/ocsp", post_sm2), sign_rate,
                    rounds, seconds, connections)
                lines += server_rows(p256, ours_p256, gunicorn_p256, workers, base, rounds,
                                     seconds, connections)
    if issuance:
        lines += issuance_rows(seconds)
    lines += startup_rows()
    return lines


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per row")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2,
                        help="server processes on each side (gunicorn, nginx, openssl -multi)")
    parser.add_argument("--no-issuance", action="store_true",
                        help="skip the issuance rows (bench/peers_issuance.py)")
    args = parser.parse_args()
    run(args.seconds, args.rounds, args.connections, args.workers, not args.no_issuance)


if __name__ == "__main__":
    main()
