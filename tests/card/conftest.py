"""The card test rig: emulated cards attached by the real ``sscard card emulate`` command in a
subprocess to the session's private pcscd (``pcsc_rig`` in tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench._common import stop_process
from sscard.emulator.pcscd import CARD_READER, PSAM_READER
from tests.conftest import PcscRig

SSCARD = [sys.executable, "-m", "sscard.cli"]
__all__ = ["CARD_READER", "PSAM_READER", "EmulatorProcess", "PcscRig", "run_cli"]


@dataclass
class EmulatorProcess:
    rig: PcscRig
    state: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*SSCARD, "card", "emulate", "--state", str(self.state), "--port", str(self.rig.port),
             *extra],
            env=self.rig.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            self.rig.wait_card(CARD_READER)
            if "--no-psam" not in extra:
                self.rig.wait_card(PSAM_READER)
        except AssertionError:
            self.kill()
            assert self.proc is not None
            raise AssertionError(
                "emulator did not attach: " + self.proc.stderr.read().decode()[-800:]  # type: ignore[union-attr]
            ) from None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        self.rig.wait_card(CARD_READER, present=False)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def emulator(pcsc_rig: PcscRig, tmp_path: Path) -> Iterator[EmulatorProcess]:
    """A fresh generation-3 sample card (and PSAM) in the virtual readers."""
    emu = EmulatorProcess(pcsc_rig, tmp_path / "card.json")
    emu.start("--new-sample")
    try:
        yield emu
    finally:
        emu.stop()


def run_cli(rig: PcscRig, *args: str, stdin: str | None = None,
            reader: bool = True) -> subprocess.CompletedProcess[str]:
    """``sscard card ...`` in a subprocess, as staff run it."""
    env = dict(rig.env)
    if reader:
        env.update(SSCARD_READER=CARD_READER, SSCARD_PSAM_READER=PSAM_READER)
    return subprocess.run([*SSCARD, "card", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=60)
