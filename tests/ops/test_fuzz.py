"""Every fuzz harness in fuzz/ runs for a bounded time (SSCARD_FUZZ_SECONDS, default 10) in a
subprocess; any unhandled exception or broken invariant fails the harness's test with the
traceback and the crashing input. The harnesses run three at a time to keep the wall time
short; longer runs: ``python fuzz/run_all.py --minutes N``."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
HARNESSES = sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py"))
SECONDS = int(os.environ.get("SSCARD_FUZZ_SECONDS", "10"))


def _atheris_available() -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true and atheris is not installed (pip install -e '.[dev]')")
        pytest.skip("atheris is not installed")


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    _atheris_available()
    base = tmp_path_factory.mktemp("fuzz")

    def run(name: str) -> tuple[str, tuple[int, str, Path]]:
        artifacts = base / name
        proc = subprocess.run(
            [sys.executable, str(FUZZ / f"fuzz_{name}.py"), "--seconds", str(SECONDS),
             "--artifacts", str(artifacts), "--corpus", str(base / f"{name}-corpus")],
            capture_output=True, text=True, timeout=SECONDS + 180, cwd=ROOT, check=False)
        return name, (proc.returncode, proc.stdout + proc.stderr, artifacts)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(run, HARNESSES))


def test_every_parser_of_outside_input_has_a_harness() -> None:
    assert set(HARNESSES) >= {"certificate", "csr", "crl", "ocsp_request", "tsa_request", "cms",
                              "apdu_response", "tlv", "gateway_json"}


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_runs_without_unhandled_exception(
        name: str, fuzz_results: dict[str, tuple[int, str, Path]]) -> None:
    code, output, artifacts = fuzz_results[name]
    crashes = sorted(artifacts.glob("crash-*")) if artifacts.exists() else []
    found = "\n".join(f"{c.name}: {c.read_bytes()[:512].hex()}" for c in crashes)
    tail = output[output.find("=== Uncaught") :] if "=== Uncaught" in output else output[-3000:]
    assert code == 0 and not crashes, f"fuzz_{name} found a problem:\n{tail}\n{found}"
    runs = [line for line in output.splitlines() if "stat::number_of_executed_units" in line]
    assert runs and int(runs[-1].split(":")[-1]) > 0, f"fuzz_{name} ran no input:\n{output}"
