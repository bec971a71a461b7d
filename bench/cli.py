"""Start-up time of the ``sscard`` command beside Python's own start-up, measured in the same
run (issue 16 item 5).

    python bench/cli.py [--runs N]

Each figure is the median wall time of N runs (default 10) of a fresh process, taken in
alternating rounds with ``python -c pass`` (the reference) so that load on the machine falls on
both alike. The command is started the way the installed ``sscard`` script starts it (import
``sscard.cli`` and call ``main``), with this checkout first on the path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
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
    subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="Runs per figure (median).")
    runs = parser.parse_args().runs
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    reference: list[float] = []
    ours: dict[str, list[float]] = {what: [] for what in CASES}
    wall(REFERENCE, env)  # warm the file cache before counting
    for args in CASES.values():
        wall([*SSCARD, *args], env)
    for _ in range(runs):
        reference.append(wall(REFERENCE, env))
        for what, args in CASES.items():
            ours[what].append(wall([*SSCARD, *args], env))
    ref = statistics.median(reference)
    for what, times in ours.items():
        mine = statistics.median(times)
        print(f"{what}: ours={mine:.3f}s reference={ref:.3f}s ratio={mine / ref:.2f}")


if __name__ == "__main__":
    main()
