"""KMC test fixtures: a throw-away SoftHSM2 token, custodians, an unsealed KMC home."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class SoftHsmToken:
    module: str
    label: str
    pin: bytes
    so_pin: bytes
    conf: Path


def _missing(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def softhsm_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsmToken]:
    """A freshly initialised SoftHSM2 token in a private token directory (SOFTHSM2_CONF)."""
    module = next((m for m in SOFTHSM_MODULE_CANDIDATES if Path(m).exists()), None)
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        _missing("SoftHSM2 is not installed (scripts/system-deps.sh: softhsm2)")
    assert module is not None and util is not None
    tokens = tmp_path / "softhsm-tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    label = f"kmc-{tmp_path.name[-12:]}"
    subprocess.run([util, "--init-token", "--free", "--label", label, "--pin", "11223344",
                    "--so-pin", "55667788"], check=True, capture_output=True,
                   env={**os.environ, "SOFTHSM2_CONF": str(conf)})
    # SoftHSM2 reads its configuration and token list at C_Initialize, and python-pkcs11 keeps
    # one initialised module per process: re-initialise so this test's token directory is seen.
    import pkcs11

    pkcs11.lib(module).reinitialize()
    yield SoftHsmToken(module, label, b"11223344", b"55667788", conf)
