"""The agent under test: ``sscard agent`` in its own process on a free port, talking to the
session's pcscd (vpcd) where an emulated card with a login-CA certificate sits; the PIN and the
consent answers reach it through pipes (its non-browser input), never through the page."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench._common import stop_process
from sscard.card.transport import InProcessTransport
from sscard.emulator.card import EmulatedCard
from sscard.emulator.psam import EmulatedPsam, make_test_psam
from sscard.emulator.sample import CardProfile, sample_card
from tests.card.conftest import CARD_READER, EmulatorProcess, PcscRig
from tests.gateway.card import personalise
from tests.idp.login_pki import LoginPki

PIN = "123456"


def personalised_card(pki: LoginPki, path: Path, pin_tries_left: int | None = None) -> Path:
    """A sample card (张三) whose signing key is certified by the login CA, saved for
    ``sscard card emulate --state``; its certificate (DER) beside it as ``<path>.cer`` (what
    an RA registers for an officer)."""
    card = EmulatedCard(sample_card(CardProfile(generation=3)))
    cert = personalise(InProcessTransport(card),
                       InProcessTransport(EmulatedPsam(make_test_psam())), pki.ca,
                       pki.card_extensions)
    path.with_suffix(".cer").write_bytes(cert.dump())
    if pin_tries_left is not None:
        card.state.pin_tries_left = pin_tries_left
    card.state.save(path)
    return path


@contextmanager
def inserted_card(rig: PcscRig, state: Path) -> Iterator[EmulatorProcess]:
    """The card saved at ``state`` (``personalised_card``) in the rig's reader, without a
    PSAM (the agent uses none), until the block ends."""
    emu = EmulatorProcess(rig, state)
    emu.start("--no-psam")
    try:
        yield emu
    finally:
        emu.stop()


@dataclass
class Agent:
    url: str
    proc: subprocess.Popen[str]
    pin_w: int
    consent_w: int
    consent_file: Path

    def give_pin(self, pin: str) -> None:
        os.write(self.pin_w, (pin + "\n").encode())

    def consent(self, yes: bool) -> None:
        os.write(self.consent_w, b"yes\n" if yes else b"no\n")

    def wait_pin_prompt(self) -> str:
        """The agent's 'PIN asked' line (it waits for the holder now)."""
        assert self.proc.stderr is not None
        while True:
            line = self.proc.stderr.readline()
            assert line, "the agent ended"
            if line.startswith("PIN asked"):
                return line


@contextmanager
def running_agent(rig: PcscRig, work: Path, origins: list[str],
                  *extra: str) -> Iterator[Agent]:
    work.mkdir(parents=True, exist_ok=True)
    allow = work / "allow.toml"
    allow.write_text("origins = [" + ", ".join(f'"{o}"' for o in origins) + "]\n")
    consent_file = work / "consent.json"
    pin_r, pin_w = os.pipe()
    consent_r, consent_w = os.pipe()
    env = dict(rig.env, SSCARD_READER=CARD_READER)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sscard.cli", "agent", "--allow-list", str(allow),
         "--consent-file", str(consent_file), "--port", "0", "--pin-from-fd", str(pin_r),
         "--consent-from-fd", str(consent_r), *extra],
        env=env, pass_fds=(pin_r, consent_r), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    os.close(pin_r)
    os.close(consent_r)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on " in line, line + (proc.stderr.read() if proc.stderr else "")
        url = line.split("listening on ", 1)[1].split()[0]
        yield Agent(url, proc, pin_w, consent_w, consent_file)
    finally:
        stop_process(proc)
        for fd in (pin_w, consent_w):
            os.close(fd)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
