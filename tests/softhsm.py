"""Real SoftHSM2 tokens for tests, usable by every area (keys, KMC storage keys, CA on an HSM).

SoftHSM2 reads its configuration (``SOFTHSM2_CONF``) when the library is initialised, and a
process initialises a PKCS#11 library once. So the whole test process shares one private
configuration and token directory in a temporary dir (never the system's /var/lib/softhsm);
``create_token`` adds tokens to it with ``softhsm2-util --init-token`` (user PIN and SO PIN).
A token created after the library was loaded in this process only shows up after
C_Finalize/C_Initialize, which ``create_token`` does through
``sscard.keys.pkcs11.reinitialize_module``; ``Pkcs11Token`` sessions notice and reopen by
themselves. Code that holds raw python-pkcs11 sessions must reopen them after ``create_token``.

From a conftest or test module::

    from tests.softhsm import SoftHsmToken, create_token

    @pytest.fixture(scope="session")
    def hsm() -> SoftHsmToken:
        return create_token("kmc-storage")

    def test_x(hsm: SoftHsmToken) -> None:
        with Pkcs11Token(hsm.label, hsm.user_pin.encode(), hsm.module) as token: ...

When SoftHSM2 is missing the helpers skip with the reason, except under ``CI=true``, where a
missing component is a failure.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class SoftHsmToken:
    """One initialised token: where the module is, its label, its PINs and a user-PIN file."""

    module: str
    label: str
    user_pin: str
    so_pin: str
    pin_file: Path  # holds the user PIN (mode 0600), for CLI --pin-file options
    conf: Path  # the process's SOFTHSM2_CONF


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def softhsm_module() -> str | None:
    env = os.environ.get("SSCARD_SOFTHSM_MODULE")
    if env:
        return env if Path(env).is_file() else None
    return next((p for p in MODULE_CANDIDATES if Path(p).is_file()), None)


def require_softhsm() -> str:
    """The module path; skip (fail with CI=true) when SoftHSM2 is not installed."""
    module = softhsm_module()
    problem = None
    if module is None:
        problem = ("SoftHSM2 module libsofthsm2.so not found"
                   " (install softhsm2: scripts/system-deps.sh)")
    elif shutil.which("softhsm2-util") is None:
        problem = "softhsm2-util not found (install softhsm2: scripts/system-deps.sh)"
    if problem is not None:
        if _in_ci():
            pytest.fail(problem)
        pytest.skip(problem)
    assert module is not None
    return module


class _Store:
    """The process's one SoftHSM2 configuration and token directory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.root: Path | None = None
        self.labels: set[str] = set()

    def conf(self) -> Path:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="sscard-softhsm-"))
            (self.root / "tokens").mkdir()
            conf = self.root / "softhsm2.conf"
            conf.write_text(
                f"directories.tokendir = {self.root / 'tokens'}\n"
                "objectstore.backend = file\n"
                "log.level = ERROR\n"
                "slots.removable = false\n"
            )
            os.environ["SOFTHSM2_CONF"] = str(conf)
            atexit.register(shutil.rmtree, self.root, True)
        return self.root / "softhsm2.conf"


_store = _Store()


def create_token(
    label: str,
    user_pin: str | None = None,
    so_pin: str | None = None,
) -> SoftHsmToken:
    """Initialise a fresh token ``label`` (unique in this process) and return how to reach it."""
    module = require_softhsm()
    if len(label.encode()) > 32:
        raise ValueError(f"token label {label!r} is longer than 32 bytes")
    user_pin = user_pin or secrets.token_hex(4)
    so_pin = so_pin or secrets.token_hex(4)
    with _store.lock:
        if label in _store.labels:
            raise ValueError(f"a SoftHSM2 token labelled {label!r} exists in this process")
        conf = _store.conf()
        env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label,
             "--pin", user_pin, "--so-pin", so_pin],
            env=env, check=True, capture_output=True, timeout=60,
        )
        _store.labels.add(label)
        _refresh_loaded_module(module)
        assert _store.root is not None
        pin_file = _store.root / f"{label}.pin"
        fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(user_pin + "\n")
    return SoftHsmToken(module=module, label=label, user_pin=user_pin, so_pin=so_pin,
                        pin_file=pin_file, conf=conf)


def _refresh_loaded_module(module: str) -> None:
    """Make a token created after the library was initialised visible in this process."""
    import pkcs11

    from sscard.keys.pkcs11 import reinitialize_module

    loaded = getattr(pkcs11, "_loaded", {})
    lib = loaded.get(module)
    if lib is not None and lib.initialized:
        reinitialize_module(module)


def softhsm_env() -> dict[str, str]:
    """Environment for a subprocess (the ``sscard`` CLI, openssl) that should see the tokens."""
    return {**os.environ, "SOFTHSM2_CONF": str(_store.conf())}
