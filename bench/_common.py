"""Shared helpers for the benchmark scripts: timing loops and the figure line format."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rate(fn: Callable[[], object], seconds: float = 2.0, min_calls: int = 20) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    return rates(fn, seconds, min_calls)[0]


def rates(fn: Callable[[], object], seconds: float = 2.0,
          min_calls: int = 20) -> tuple[float, float]:
    """Calls per second of ``fn`` over about ``seconds`` of wall-clock time (after one warm-up
    call): by wall-clock and by this process's CPU time. On a shared machine the CPU-time
    rate is the steadier one: time spent waiting for the CPU does not count."""
    fn()
    calls = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(min_calls):
            fn()
        calls += min_calls
        now = time.perf_counter()
        if now >= deadline:
            cpu = max(time.process_time() - cpu_start, 1e-9)
            return calls / (now - start), calls / cpu


def figure(what: str, ours: float, reference: float | None, unit: str = "/s") -> str:
    """One line in the project's benchmark format."""
    if reference:
        return (f"{what}: ours={ours:.0f}{unit} reference={reference:.0f}{unit} "
                f"ratio={ours / reference:.2f}")
    return f"{what}: ours={ours:.0f}{unit}"


def openssl_speed(algorithms: list[str], seconds: int = 2,
                  processes: int = 1) -> dict[str, tuple[float, float]]:
    """sign/s and verify/s from ``openssl speed -mr`` for e.g. sm2, ecdsap256, rsa2048; with
    ``processes`` > 1, the sum over that many processes (``-multi``)."""
    exe = shutil.which("openssl")
    if exe is None:
        raise SystemExit("openssl command line not found (Debian package openssl)")
    multi = ["-multi", str(processes)] if processes > 1 else []
    out = subprocess.run([exe, "speed", *multi, "-seconds", str(seconds), "-mr", *algorithms],
                         capture_output=True, text=True, check=True).stdout
    found: dict[str, tuple[float, float]] = {}
    for line in out.splitlines():
        if m := re.match(r"\+F2:\d+:(\d+):([\d.]+):([\d.]+)", line):
            found[f"rsa{m[1]}"] = (float(m[2]), float(m[3]))
        elif m := re.match(r"\+F4:\d+:(\d+):([\d.]+):([\d.]+)", line):
            found[f"ecdsap{m[1]}"] = (float(m[2]), float(m[3]))
        elif m := re.match(r"\+F7:\d+:\d+:CurveSM2:([\d.]+):([\d.]+)", line):
            found["sm2"] = (float(m[1]), float(m[2]))
    return found


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so that a bench killed by ``kill`` or a timeout still
    runs its ``finally`` blocks and stops the servers it started in their own sessions (they
    would otherwise outlive it and load the machine for whatever runs next)."""
    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop one child process (not a group: ``stop_group``): SIGTERM, SIGKILL if it has not
    gone in ``timeout`` seconds; then reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own process group (``start_new_session=True``): SIGTERM to
    the whole group (a gunicorn master and its workers), SIGKILL if it has not gone in 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class DidNotStart(RuntimeError):
    """A server started for a run or a test did not come up (its log's end is in the
    message)."""


def wait_until_up(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes],
                  log: Path, timeout: float = 60.0, interval: float = 0.1) -> None:
    """Ask ``ready`` every ``interval`` seconds until it says the server ``proc`` (writing to
    ``log``) is up; ``DidNotStart`` if the process ends first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise DidNotStart(f"{what} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(interval)
