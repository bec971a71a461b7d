"""bench/peers.py in a short bounded run: it must start our CA service and the peers (nginx,
cfssl ocspserve, the openssl ocsp responder), check that each answers a successful OCSP
response, drive them with wrk and print every row in the project's format with its latency and
CPU lines. Figures are not judged here (speed belongs in bench/); that the rows exist is."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROW = r": ours=(\d+)/s reference=(\d+)/s ratio=([\d.]+)"
DETAIL = r"    {}: p50=[\d.]+ ms p99=[\d.]+ ms server CPU \d+ us/answer"


def test_peers_bench_short_run() -> None:
    for program, package in (("nginx", "nginx"), ("cfssl", "golang-cfssl"), ("wrk", "wrk"),
                             ("openssl", "openssl")):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is missing: run scripts/system-deps.sh (Debian {package})")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "peers.py"), "--seconds", "1",
                           "--rounds", "1", "--connections", "4"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for what in ("OCSP pre-signed GET through deploy/nginx/ocsp.conf", "OCSP cached GET, P-256",
                 "OCSP cached GET, SM2", "OCSP nonce POST, P-256",
                 "OCSP nonce POST, SM2"):
        row = re.search(re.escape(what) + r".*" + ROW, out)
        assert row is not None, f"no row {what!r} in:\n{out}"
        assert int(row[1]) > 0 and int(row[2]) > 0, row[0]
        detail = out[row.end():].splitlines()[1]
        assert re.match(DETAIL.format("ours"), detail), detail
    assert "cfssl ocspserve" in out and "openssl ocsp -multi 2" in out, out
    assert "sscard ca ocsp-serve vs openssl ocsp" in out, out  # the OCSP rows are ocsp-serve's
    assert re.search(r"ocsp-serve \(granian\) vs ca serve \(gunicorn gthread\)" + ROW, out), out
    assert re.search(r"1 process x 4 threads vs 2 processes x 2 threads" + ROW, out), out
    assert re.search(r"issuance rows: not available|issuance .*: ours=\d+/s", out), out
    assert re.search(r"CLI start-up, sscard --help .*: ours=[\d.]+s reference=[\d.]+s", out), out
