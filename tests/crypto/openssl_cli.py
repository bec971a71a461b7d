"""Running the openssl command line as an independent peer in tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DISTID = "distid:1234567812345678"


def openssl_path() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("the openssl command line is required (Debian package openssl)")
    return path


def openssl(*args: str | Path, input: bytes | None = None, check: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    cmd = [openssl_path(), *map(str, args)]
    proc = subprocess.run(cmd, input=input, capture_output=True, cwd=cwd, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"openssl {' '.join(map(str, args))} failed ({proc.returncode}):\n"
            f"{proc.stdout.decode(errors='replace')}\n{proc.stderr.decode(errors='replace')}"
        )
    return proc
