"""What every harness shares: the command line (time budget, corpus, artifact directory),
seeding the corpus with valid inputs, and the rule that a harness fails only on an exception
outside the parser's documented error types (or a broken output invariant)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import atheris

#: modules whose code coverage guides the fuzzer (instrumented on import)
INSTRUMENT = ["sscard", "ca", "asn1crypto"]


def main(test_one_input: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]) -> None:
    """``python fuzz/fuzz_X.py --seconds N [--corpus DIR] [--artifacts DIR] [--runs N]``;
    a crashing input goes to ``DIR/crash-<sha1>`` and the process exits non-zero."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="time budget")
    parser.add_argument("--corpus", type=Path, help="corpus directory (kept between runs)")
    parser.add_argument("--artifacts", type=Path, default=Path("."),
                        help="where crashing inputs are written")
    parser.add_argument("--runs", type=int, default=-1, help="stop after this many inputs")
    parser.add_argument("replay", nargs="*", type=Path,
                        help="only run these inputs once each (a crash file to reproduce)")
    args = parser.parse_args()
    if args.replay:
        for path in args.replay:
            test_one_input(path.read_bytes())
        print(f"replayed {len(args.replay)} input(s) without a finding")
        return
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix="sscard-fuzz-corpus-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds()):
        target = corpus / f"seed-{i:03d}"
        if not target.exists():
            target.write_bytes(seed)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    libfuzzer_args = [
        sys.argv[0], f"-max_total_time={args.seconds}", "-rss_limit_mb=2048", "-timeout=30",
        f"-artifact_prefix={args.artifacts}/", "-print_final_stats=1", "-max_len=16384",
        f"-runs={args.runs}", str(corpus),
    ]
    atheris.Setup(libfuzzer_args, test_one_input)
    atheris.Fuzz()


def instrumented() -> atheris.instrument_imports:
    return atheris.instrument_imports(include=INSTRUMENT)
