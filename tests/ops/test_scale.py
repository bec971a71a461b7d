"""The province-scale script in a short bounded run: it must issue every certificate through the
batch path into its own PostgreSQL, build the CRL, answer OCSP for good, revoked and unknown
serials, and print its figures in the project's format (the full million is run by hand)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.pg import require_postgres

ROOT = Path(__file__).resolve().parents[2]


def test_scale_script_short_run() -> None:
    require_postgres()
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "scale.py"), "--count", "1500",
                           "--ocsp-seconds", "1", "--profile", "300"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, check=False)
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    issuance = re.search(r"issuance of 1,500 SM2 certificates into PostgreSQL .*: "
                         r"ours=(\d+)/s reference=(\d+)/s ratio=([\d.]+)", out)
    assert issuance and int(issuance[1]) > 0 and int(issuance[2]) > 0, out
    assert re.search(r"full CRL with 150 revoked entries", out), out
    ocsp = re.search(r"OCSP answers .*statuses good (\d+), revoked (\d+), unknown (\d+)\): "
                     r"ours=(\d+)/s reference=(\d+)/s", out)
    assert ocsp and all(int(ocsp[i]) > 0 for i in range(1, 6)), out
    assert re.search(r"memory: peak RSS issuing worker=\d+ MB", out), out
    assert re.search(r"database size: \d+ MB total", out), out
    assert re.search(r"projection for 16,130,000 cards: issuance [\d.]+ h", out), out
    assert "SM2 signature (OpenSSL): " in out, out
