"""A private pcscd with vsmartcard's vpcd driver, for tests, benchmarks and the demo.

pcscd's socket path is fixed at build time (/run/pcscd/pcscd.comm), so this runs pcscd in a
private mount namespace (``unshare --mount``, needs root, as in CI) with a temporary directory
bound over /run/pcscd, and points PC/SC clients at it through PCSCLITE_CSOCK_NAME. Its
reader.conf uses a free port pair, so parallel runs and a system pcscd do not clash."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
CARD_READER = "Virtual PCD 00 00"
PSAM_READER = "Virtual PCD 00 01"


class PcscdUnavailable(RuntimeError):
    """pcscd, the vpcd driver or unshare is missing, or pcscd did not start."""


def free_port_pair() -> int:
    """A port P such that P and P + 1 are free on 127.0.0.1 (the card and PSAM slots)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65000:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise PcscdUnavailable("no free pair of TCP ports")


class PrivatePcscd:
    """``with PrivatePcscd() as rig:`` sets PCSCLITE_CSOCK_NAME in this process (before any
    PC/SC call) and offers ``rig.env`` for subprocesses."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sscard-pcscd-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.port = 0
        self.socket_path = workdir / "run" / "pcscd.comm"
        self.env: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivatePcscd:
        pcscd = shutil.which("pcscd") or "/usr/sbin/pcscd"
        unshare = shutil.which("unshare")
        if not Path(pcscd).exists() or not VPCD_DRIVER.exists():
            raise PcscdUnavailable("pcscd or vsmartcard-vpcd not installed "
                                   "(scripts/system-deps.sh)")
        if unshare is None:
            raise PcscdUnavailable("unshare (util-linux) not found")
        run_dir, conf_dir = self.workdir / "run", self.workdir / "reader.conf.d"
        run_dir.mkdir(parents=True, exist_ok=True)
        conf_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port_pair()
        (conf_dir / "vpcd").write_text(
            f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME   /dev/null:{self.port:#x}\n'
            f"LIBPATH      {VPCD_DRIVER}\nCHANNELID    {self.port:#x}\n"
        )
        script = (f"mkdir -p /run/pcscd && mount --bind {run_dir} /run/pcscd && "
                  f"exec {pcscd} --foreground --config {conf_dir}")
        log_path = self.workdir / "pcscd.log"
        with log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [unshare, "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while not self.socket_path.exists() and time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        if not self.socket_path.exists():
            self.stop()
            raise PcscdUnavailable(f"private pcscd did not start: "
                                   f"{log_path.read_text(errors='replace')[-500:]}")
        os.environ["PCSCLITE_CSOCK_NAME"] = str(self.socket_path)
        self.env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(self.socket_path),
                        SSCARD_VPCD_PORT=str(self.port))
        self._wait_readers()
        return self

    def _wait_readers(self) -> None:
        from sscard.card.transport import PcscContext

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with PcscContext() as ctx:
                if CARD_READER in ctx.readers():
                    return
            time.sleep(0.1)
        raise PcscdUnavailable("the vpcd readers did not appear")

    def card_present(self, reader: str = CARD_READER) -> bool:
        from sscard.card.transport import PcscContext

        with PcscContext() as ctx:
            return reader in ctx.readers() and ctx.card_present(reader)

    def wait_card(self, reader: str = CARD_READER, present: bool = True,
                  timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.card_present(reader) == present:
                return
            time.sleep(0.05)
        raise TimeoutError(f"card {'not inserted into' if present else 'not removed from'} "
                           f"{reader!r} within {timeout}s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PrivatePcscd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
