"""Run every fuzz harness for a longer time: ``python fuzz/run_all.py --minutes N``.

Each harness gets N minutes and its own persistent corpus (``--corpus-dir``, default
``~/.cache/sscard-fuzz/<harness>``, so every long run starts from what earlier runs found);
``--jobs`` harnesses run at once. Crashing inputs land in ``--artifacts`` (default
``./fuzz-artifacts``); each one must become a regression test in ``tests/ops`` and go to the
owner of the parser. Exit status 1 when any harness found something.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def harnesses() -> list[str]:
    return sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))


def run_one(name: str, seconds: int, corpus: Path | None, artifacts: Path,
            log_dir: Path) -> tuple[str, int, str]:
    cmd = [sys.executable, str(HERE / f"fuzz_{name}.py"), "--seconds", str(seconds),
           "--artifacts", str(artifacts / name)]
    if corpus is not None:
        cmd += ["--corpus", str(corpus / name)]
    log = log_dir / f"{name}.log"
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False,
                              timeout=seconds + 600)
    text = log.read_text(errors="replace")
    rate = next((line.split(":")[-1].strip() for line in text.splitlines()
                 if "average_exec_per_sec" in line), "?")
    return name, proc.returncode, rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="budget per harness")
    parser.add_argument("--jobs", type=int, default=2, help="harnesses at once")
    parser.add_argument("--only", nargs="*", default=None, help="harness names")
    parser.add_argument("--corpus-dir", type=Path,
                        default=Path.home() / ".cache" / "sscard-fuzz")
    parser.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"))
    args = parser.parse_args()
    names = args.only or harnesses()
    unknown = sorted(set(names) - set(harnesses()))
    if unknown:
        parser.error(f"no harness named {', '.join(unknown)} (have: {', '.join(harnesses())})")
    seconds = max(1, int(args.minutes * 60))
    log_dir = args.artifacts / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda n: run_one(n, seconds, args.corpus_dir, args.artifacts,
                                                  log_dir), names))
    failed = 0
    for name, code, rate in results:
        found = sorted((args.artifacts / name).glob("crash-*")) + sorted(
            (args.artifacts / name).glob("timeout-*")) + sorted(
            (args.artifacts / name).glob("oom-*"))
        verdict = "ok" if code == 0 and not found else f"FOUND (exit {code})"
        failed += verdict != "ok"
        print(f"{name}: {verdict}, {rate} inputs/s; log {log_dir / (name + '.log')}")
        for f in found:
            print(f"    {f}")
    print(f"{len(names)} harness(es), {seconds}s each, {time.monotonic() - started:.0f}s wall")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
