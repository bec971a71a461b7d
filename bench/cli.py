"""Start-up time of the ``sscard`` command beside Python's own start-up, measured in the same
run (issue 16 item 5).

    python bench/cli.py [--runs N]

Each figure is the median wall time of N runs (default 10) of a fresh process, taken in
alternating rounds with ``python -c pass`` (the reference) so that load on the machine falls on
both alike. The command is started the way the installed ``sscard`` script starts it (import
``sscard.cli`` and call ``main``), with this checkout first on the path. Besides the help
screens it times one real command: ``sscard verify`` of a CMS signature that ``openssl cms
-sign`` made (parse, path building, report; exit 1 as the self-signed signer is not a trust
anchor of the default mode, which does not matter here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SSCARD = [sys.executable, "-c", "import sys; from sscard.cli import main; sys.argv[0] = "
          "'sscard'; main()"]
REFERENCE = [sys.executable, "-c", "pass"]
CASES = {"sscard --help": ["--help"], "sscard ca --help": ["ca", "--help"],
         "sscard card --help": ["card", "--help"]}


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    if proc.returncode not in (0, 1):  # 1: "not valid", a finished verification
        raise SystemExit(f"{argv}: exit {proc.returncode}")
    return time.perf_counter() - start


def signed_sample(work: Path) -> list[str]:
    """``verify`` arguments for a CMS SignedData made by OpenSSL in ``work``."""
    key, cert, data, signed = (work / n for n in ("k.pem", "c.pem", "data", "s.p7s"))
    data.write_bytes(b"benchmark content\n")
    openssl = ["openssl"]
    subprocess.run([*openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=Bench Signer",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    subprocess.run([*openssl, "cms", "-sign", "-in", str(data), "-signer", str(cert), "-inkey",
                    str(key), "-outform", "DER", "-out", str(signed), "-nodetach"],
                   check=True, capture_output=True)
    return ["verify", str(signed), "--trust", str(cert)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="Runs per figure (median).")
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as work:
        measure(runs, {**CASES, "sscard verify (local)": signed_sample(Path(work))})


def measure(runs: int, cases: dict[str, list[str]]) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    reference: list[float] = []
    ours: dict[str, list[float]] = {what: [] for what in cases}
    wall(REFERENCE, env)  # warm the file cache before counting
    for args in cases.values():
        wall([*SSCARD, *args], env)
    for _ in range(runs):
        reference.append(wall(REFERENCE, env))
        for what, args in cases.items():
            ours[what].append(wall([*SSCARD, *args], env))
    ref = statistics.median(reference)
    for what, times in ours.items():
        mine = statistics.median(times)
        print(f"{what}: ours={mine:.3f}s reference={ref:.3f}s ratio={mine / ref:.2f}")


if __name__ == "__main__":
    main()
