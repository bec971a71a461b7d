"""OCSP over HTTP, measured from a second process (``wrk``) against ``sscard ca serve``.

Figures (each beside a reference measured in the same run, on the same server):

- cached RFC 5019 GET answers per second, against the same server's rate for a static download
  (``/certs/<ca>.crt``, a constant body through Flask): how much the OCSP fast path costs
  compared with serving a file;
- nonce POST answers per second (status from the cache, signature made afresh per request),
  against the raw sign rate of the responder's key in one process.

Run: ``.venv/bin/python bench/ca_protocols.py [--algorithm sm2|ec-p256] [--workers N]``.
``bench/ca.py`` calls ``bench_ocsp()``.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import requests
from asn1crypto import core
from asn1crypto import ocsp as asn1ocsp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import figure, rate
from ca.authority import CertificateAuthority
from sscard.audit import AuditLog
from sscard.crypto.hashes import digest
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name

SSCARD = str(Path(sys.executable).with_name("sscard"))


def _config(algorithm: str) -> str:
    return f"""\
base_url = "http://127.0.0.1:8080"

[root]
name = "root"
subject = "CN=Bench Root,O=人社厅,C=CN"
algorithm = "{algorithm}"
validity_days = 3650

[[issuing]]
name = "issuing"
subject = "CN=Bench Issuing,O=人社厅,C=CN"
algorithm = "{algorithm}"
validity_days = 1825
path_length = 0
"""


def _request(authority: CertificateAuthority, serial: int, nonce: bytes | None) -> bytes:
    issuer = authority.certificate
    cert_id = {
        "hash_algorithm": {"algorithm": "sha1"},
        "issuer_name_hash": digest("sha1", issuer.subject.dump()),
        "issuer_key_hash": digest("sha1", issuer.public_key["public_key"].contents[1:]),
        "serial_number": serial,
    }
    tbs: dict[str, object] = {"request_list": [{"req_cert": cert_id}]}
    if nonce is not None:
        tbs["request_extensions"] = [{"extn_id": "nonce", "extn_value": core.OctetString(nonce)}]
    return asn1ocsp.OCSPRequest({"tbs_request": tbs}).dump()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> float:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk not found (Debian package wrk)")
    args = [exe, "-t2", f"-c{connections}", f"-d{seconds}s"]
    if script is not None:
        args += ["-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no rate in wrk output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non_2xx:
        raise RuntimeError(f"{non_2xx[1]} failed responses during the run:\n{out}")
    return float(match[1])


def _lua_post(body: bytes, content_type: str) -> str:
    escaped = "".join(f"\\{b}" for b in body)
    return (f'wrk.method = "POST"\nwrk.body = "{escaped}"\n'
            f'wrk.headers["Content-Type"] = "{content_type}"\n')


def bench_ocsp(algorithm: str = "sm2", workers: int = 2, seconds: int = 5,
               connections: int = 32) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-ocsp-") as tmp:
        home = Path(tmp) / "home"
        (Path(tmp) / "ca.toml").write_text(_config(algorithm), encoding="utf-8")
        authority = CertificateAuthority.init(home, Path(tmp) / "ca.toml",
                                              audit=AuditLog.at_home(home))
        key = SoftwareKey.generate(algorithm)
        csr = CsrBuilder().subject(parse_name("CN=Bench Leaf,O=人社厅,C=CN")).sign(key)
        serial = authority.issue_from_csr(csr, "business-system").serial
        get_path = "/ocsp/" + urllib.parse.quote(
            base64.b64encode(_request(authority, serial, None)).decode(), safe="")
        nonce_request = _request(authority, serial, os.urandom(16))
        responder_key = authority.ocsp_signer().key
        authority.close()

        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = (Path(tmp) / "serve.log").open("wb")
        proc = subprocess.Popen(
            [SSCARD, "--home", str(home), "ca", "serve", "--port", str(port),
             "--workers", str(workers), "--no-tsa"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(f"{base}/certs/chain.pem", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("ca serve did not start; see its log")
                time.sleep(0.2)
            for _ in range(workers * 8):  # warm every worker's caches
                requests.get(base + get_path, timeout=5)
                requests.post(base + "/ocsp", data=nonce_request, timeout=5)

            static = _wrk(f"{base}/certs/issuing.crt", seconds, connections)
            cached = _wrk(base + get_path, seconds, connections)
            lines.append(figure(
                f"OCSP cached GET answers over HTTP ({workers} gunicorn workers, {algorithm}) "
                "vs static download, same server", cached, static))

            script = Path(tmp) / "post.lua"
            script.write_text(_lua_post(nonce_request, "application/ocsp-request"))
            signed = _wrk(f"{base}/ocsp", seconds, connections, script)
            sign_rate = rate(lambda: responder_key.sign(b"x" * 200), seconds=2.0)
            lines.append(figure(
                f"OCSP nonce POST answers over HTTP (fresh {algorithm} signature each) "
                "vs raw sign rate, one process", signed, sign_rate))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="sm2", choices=["sm2", "ec-p256", "rsa2048"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for line in bench_ocsp(args.algorithm, args.workers, args.seconds, args.connections):
        print(line, flush=True)


if __name__ == "__main__":
    main()
