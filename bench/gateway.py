"""Gateway throughput beside the raw key-handle rate of the same key, in the same run.

    python bench/gateway.py [--seconds N] [--workers N] [--clients N] [--batch N] [--audit]

Starts the gateway under gunicorn (``--workers`` processes, ``sscard.gateway.wsgi:app``) with a
throw-away SM2 PKI, and drives it with ``wrk`` (Debian package wrk: a C load generator, so the
client takes little of the CPU the gateway shares) over ``--connections`` keep-alive
connections. The caller is authenticated as in the production layout: a TLS-terminating proxy
checks the business system's client certificate and passes it in a trusted header
(``trusted_client_cert_header``); the gateway still validates that certificate (path, purpose,
revocation: cached) and authorises the system on every request. ``--driver python`` instead
drives it from Python processes signing each request (request signatures, ECDSA P-256).
Figures, one line each:

    gateway SM2 sign, one per request: ours=<n>/s reference=<n>/s ratio=<r>   (goal >= 0.50)
    gateway SM2 sign, batched: ...                                             (goal >= 0.85)
    gateway SM2 verify, batched, warm caches: ...                              (goal >= 0.70)

``reference`` is the raw rate of the same operation with the same key in one Python thread
(``SoftwareKey.sign`` / ``PublicKey.verify`` on the same document). Raw and gateway
measurements alternate for ``--rounds`` rounds and the best of each is kept, so a busy machine
skews both alike. ``--audit`` records every call in an SQLite audit log (sscard.audit, one
durable attempt and one outcome record per call), as production does.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import figure, rate, stop_process
from sscard.cms import sign
from sscard.gateway.config import BUSINESS_SYSTEM_POLICY
from sscard.httpsig import sign_request
from sscard.keys.software import SoftwareKey
from sscard.x509.pem import der_to_pem
from tests.cms.pki import make_leaf, make_pki

DOC = ("社会保险费缴费明细 " * 20).encode()
PASS = "bench passphrase"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup(home: Path, audit: bool) -> dict[str, Any]:
    pki = make_pki("sm2")
    signer = make_leaf("CN=人社厅业务签名,O=人社厅,C=CN", pki.ca, "sm2")
    system = make_leaf("CN=bench,O=基准测试,C=CN", pki.ca, "ec-p256", eku=["client_auth"],
                       extra=[("certificate_policies",
                               [{"policy_identifier": BUSINESS_SYSTEM_POLICY}], False)])
    (home / "system.pem").write_bytes(der_to_pem(system.cert.dump(), "CERTIFICATE"))
    (home / "pass").write_text(PASS + "\n")
    (home / "pass").chmod(0o600)  # a secret file: owner only
    signer.key.store(home / "sign.key", PASS.encode())
    (home / "sign.pem").write_bytes(der_to_pem(signer.cert.dump(), "CERTIFICATE"))
    (home / "root.pem").write_bytes(der_to_pem(pki.root.cert.dump(), "CERTIFICATE"))
    (home / "ca.pem").write_bytes(der_to_pem(pki.ca.cert.dump(), "CERTIFICATE"))
    audit_line = f'audit_url = "sqlite:///{home / "audit.db"}"\n' if audit else ""
    (home / "gateway.toml").write_text(
        'trust_anchors = ["root.pem"]\nintermediates = ["ca.pem"]\n'
        f"max_request_bytes = 67108864\n{audit_line}"
        # the workers share the replay memory of signed requests, as in production
        f'database_url = "sqlite:///{home / "gateway.db"}"\n'
        'trusted_client_cert_header = "X-Client-Cert"\n'
        '[keys.sign]\nkey = "sign.key"\npassphrase_file = "pass"\ncertificate = "sign.pem"\n'
        'chain = ["ca.pem"]\n'
        '[systems.bench]\ncertificate_files = ["system.pem"]\n'
        'operations = ["sign", "verify"]\nsigning_keys = ["sign"]\n')
    return {"signer": signer, "system": system, "pki": pki}


def _client_loop(port: int, path: str, body_fn: Any, system: Any, seconds: float,
                 per_request: int, out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    cert_der = system.cert.dump()
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        body = body_fn()
        headers = sign_request(system.key, cert_der, "POST", path, "", body)
        headers["Content-Type"] = "application/json"
        conn.request("POST", path, body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise SystemExit(f"gateway answered {answer.status}: {data[:300]!r}")
        done += per_request
    out.put(done)


def _drive(port: int, path: str, body: bytes, system: Any, seconds: float, clients: int,
           per_request: int) -> float:
    queue: Any = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_client_loop, args=(
        port, path, lambda: body, system, seconds, per_request, queue)) for _ in range(clients)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    total = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    return total / (time.perf_counter() - start)


def _drive_wrk(port: int, path: str, body: bytes, system: Any, seconds: float,
               connections: int, per_request: int, home: Path) -> float:
    """Requests per second from wrk (one thread: wrk needs little CPU), times the items."""
    from urllib.parse import quote

    body_file = home / f"body{len(body)}.json"
    body_file.write_bytes(body)
    pem = quote(der_to_pem(system.cert.dump(), "CERTIFICATE").decode(), safe="")
    script = home / f"post{len(body)}.lua"
    script.write_text(
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-Client-Cert"] = "{pem}"\n'
        "function response(status, headers, body)\n"
        '  if status ~= 200 then io.stderr:write("HTTP " .. status .. " " .. body .. "\\n") end\n'
        "end\n")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script),
         f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True)
    if "HTTP " in out.stderr or "Non-2xx" in out.stdout:
        raise SystemExit(f"gateway refused requests: {out.stderr[:500]} {out.stdout}")
    for line in out.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1]) * per_request
    raise SystemExit(f"no rate in wrk's output: {out.stdout}")


def _wait_up(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gateway did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--clients", type=int, default=(os.cpu_count() or 2) * 2,
                        help="client processes (--driver python)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--driver", choices=["wrk", "python"], default="wrk")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--audit", action="store_true",
                        help="record every call in an SQLite audit log")
    args = parser.parse_args()
    multiprocessing.set_start_method("fork")
    gunicorn = shutil.which("gunicorn") or str(Path(sys.executable).parent / "gunicorn")
    with tempfile.TemporaryDirectory(prefix="sscard-bench-gw-") as tmp:
        home = Path(tmp)
        rig = _setup(home, args.audit)
        signer, system = rig["signer"], rig["system"]
        port = _free_port()
        log = home / "gunicorn.log"
        env = dict(os.environ, SSCARD_GATEWAY_CONFIG=str(home / "gateway.toml"))
        with log.open("wb") as log_fh:
            proc = subprocess.Popen(
                [gunicorn, "-w", str(args.workers), "-k", "gthread", "--threads", "2",
                 "-b", f"127.0.0.1:{port}", "--keep-alive", "30", "--log-level", "warning",
                 "sscard.gateway.wsgi:app"], env=env, stdout=log_fh, stderr=subprocess.STDOUT)
        try:
            _wait_up(port, proc, log)
            _run(args, port, signer, system, home)
        finally:
            stop_process(proc, timeout=15)


def _run(args: argparse.Namespace, port: int, signer: Any, system: Any, home: Path) -> None:
    def drive(path: str, body: bytes, per_request: int, seconds: float) -> float:
        if args.driver == "wrk":
            return _drive_wrk(port, path, body, system, seconds, args.connections,
                              per_request, home)
        return _drive(port, path, body, system, seconds, args.clients, per_request)

    key: SoftwareKey = signer.key
    public = key.public_key()
    doc_b64 = base64.b64encode(DOC).decode()
    one = json.dumps({"key": "sign", "content": doc_b64, "detached": True}).encode()
    batch = json.dumps({"key": "sign", "detached": True,
                        "items": [{"content": doc_b64}] * args.batch}).encode()
    signed = sign(DOC, key, signer.cert, detached=True)
    signed_b64 = base64.b64encode(signed).decode()
    verify_batch = json.dumps({"items": [{"signed": signed_b64, "content": doc_b64}]
                               * args.batch}).encode()
    raw_signature = key.sign(DOC)
    # warm the caches (caller path validation, signer path validation) in every worker
    drive("/v1/verify/batch", verify_batch, args.batch, 1)

    best: dict[str, float] = {k: 0.0 for k in
                              ("raw_sign", "raw_verify", "one", "batched", "verify")}
    for _ in range(args.rounds):
        best["raw_sign"] = max(best["raw_sign"], rate(lambda: key.sign(DOC), args.seconds))
        best["one"] = max(best["one"], drive("/v1/sign", one, 1, args.seconds))
        best["batched"] = max(best["batched"], drive("/v1/sign/batch", batch, args.batch,
                                                     args.seconds))
        best["raw_verify"] = max(best["raw_verify"], rate(
            lambda: public.verify(raw_signature, DOC), args.seconds))
        best["verify"] = max(best["verify"], drive("/v1/verify/batch", verify_batch,
                                                   args.batch, args.seconds))
    suffix = " (audited)" if args.audit else ""
    load = (f"wrk connections={args.connections}" if args.driver == "wrk"
            else f"python clients={args.clients}")
    print(f"# gunicorn workers={args.workers} {load} batch={args.batch} cpus={os.cpu_count()}")
    print(figure(f"gateway SM2 sign, one per request{suffix}", best["one"], best["raw_sign"]))
    print(figure(f"gateway SM2 sign, batched{suffix}", best["batched"], best["raw_sign"]))
    print(figure(f"gateway SM2 verify, batched, warm caches{suffix}", best["verify"],
                 best["raw_verify"]))


if __name__ == "__main__":
    main()
