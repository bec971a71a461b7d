"""The card test rig: a private pcscd with vsmartcard's vpcd driver, and emulated cards attached
to it by the real ``sscard card emulate`` command in a subprocess.

pcscd's socket path is fixed at build time (/run/pcscd/pcscd.comm), so the rig runs pcscd in a
private mount namespace (``unshare -m``) with a temporary directory bound over /run/pcscd, and
points the PC/SC client library at it with PCSCLITE_CSOCK_NAME. Its reader.conf uses a free
port, so parallel runs and a system pcscd do not clash."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SSCARD = [sys.executable, "-m", "sscard.cli"]
CARD_READER = "Virtual PCD 00 00"
PSAM_READER = "Virtual PCD 00 01"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (required in CI)")
    pytest.skip(what)


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65000:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of TCP ports")


@dataclass
class PcscRig:
    port: int
    socket_path: Path
    env: dict[str, str]
    workdir: Path

    def card_present(self, reader: str) -> bool:
        from sscard.card.transport import PcscContext

        with PcscContext() as ctx:
            return reader in ctx.readers() and ctx.card_present(reader)

    def wait_card(self, reader: str, present: bool = True, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.card_present(reader) == present:
                return
            time.sleep(0.05)
        raise AssertionError(f"card {'not inserted into' if present else 'not removed from'} "
                             f"{reader!r} within {timeout}s")


@pytest.fixture(scope="session")
def pcsc_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscRig]:
    pcscd = shutil.which("pcscd") or "/usr/sbin/pcscd"
    if not Path(pcscd).exists() or not VPCD_DRIVER.exists():
        _missing("pcscd or vsmartcard-vpcd not installed (scripts/system-deps.sh)")
    unshare = shutil.which("unshare")
    if unshare is None:
        _missing("unshare (util-linux) not found")
    work = tmp_path_factory.mktemp("pcsc")
    run_dir, conf_dir = work / "run", work / "reader.conf.d"
    run_dir.mkdir()
    conf_dir.mkdir()
    port = _free_port_pair()
    (conf_dir / "vpcd").write_text(
        f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME   /dev/null:{port:#x}\n'
        f"LIBPATH      {VPCD_DRIVER}\nCHANNELID    {port:#x}\n"
    )
    script = (f"mkdir -p /run/pcscd && mount --bind {run_dir} /run/pcscd && "
              f"exec {pcscd} --foreground --config {conf_dir}")
    log = (work / "pcscd.log").open("wb")
    proc = subprocess.Popen([unshare, "--mount", "--propagation", "private", "sh", "-c", script],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sock = run_dir / "pcscd.comm"
    deadline = time.monotonic() + 10
    while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not sock.exists():
        proc.kill()
        proc.wait()
        _missing(f"private pcscd did not start: {(work / 'pcscd.log').read_text()[-500:]}")
    os.environ["PCSCLITE_CSOCK_NAME"] = str(sock)
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(sock), SSCARD_VPCD_PORT=str(port))
    rig = PcscRig(port, sock, env, work)
    try:
        from sscard.card.transport import PcscContext

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with PcscContext() as ctx:
                if CARD_READER in ctx.readers():
                    break
            time.sleep(0.1)
        yield rig
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
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
