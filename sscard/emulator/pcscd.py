"""A private pcscd with vsmartcard's vpcd driver, for tests, benchmarks and the demo.

pcscd's socket path is fixed at build time (/run/pcscd/pcscd.comm), so this runs pcscd in a
private mount namespace (``unshare --mount``, needs root, as in CI) with a temporary directory
bound over /run/pcscd, and points PC/SC clients at it through PCSCLITE_CSOCK_NAME. Its
reader.conf uses a free port pair, so parallel runs and a system pcscd do not clash.

Where mount namespaces are not allowed (an unprivileged container) and no pcscd is running, it
falls back to starting pcscd on the standard socket with the same private reader.conf; such
runs cannot overlap."""

from __future__ import annotations

import os
import shlex
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


def _socket_alive(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


class PrivatePcscd:
    """``with PrivatePcscd() as rig:`` sets PCSCLITE_CSOCK_NAME in this process (before any
    PC/SC call) and offers ``rig.env`` for subprocesses."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sscard-pcscd-")
            workdir = Path(self._tmp.name)
        # absolute: pcscd is handed its reader.conf.d and socket paths, and runs elsewhere
        self.workdir = workdir.absolute()
        self.port = 0
        self.socket_path = workdir / "run" / "pcscd.comm"
        self.env: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivatePcscd:
        pcscd = shutil.which("pcscd") or "/usr/sbin/pcscd"
        if not Path(pcscd).exists() or not VPCD_DRIVER.exists():
            raise PcscdUnavailable("pcscd or vsmartcard-vpcd not installed "
                                   "(scripts/system-deps.sh)")
        run_dir, conf_dir = self.workdir / "run", self.workdir / "reader.conf.d"
        run_dir.mkdir(parents=True, exist_ok=True)
        conf_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port_pair()
        (conf_dir / "vpcd").write_text(
            f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME   /dev/null:{self.port:#x}\n'
            f"LIBPATH      {VPCD_DRIVER}\nCHANNELID    {self.port:#x}\n"
        )
        # every path quoted for sh -c (a data directory may have spaces or quotes in its name)
        foreground = f"exec {shlex.join([pcscd, '--foreground', '--config', str(conf_dir)])}"
        unshare = shutil.which("unshare")
        problems = []
        if unshare is not None:
            script = (f"mkdir -p /run/pcscd && mount --bind {shlex.quote(str(run_dir))} "
                      f"/run/pcscd && {foreground}")
            problem = self._launch([unshare, "--mount", "--propagation", "private", "sh", "-c",
                                    script], self.socket_path)
            if problem is None:
                return self._started()
            problems.append(f"private namespace: {problem}")
        else:
            problems.append("unshare (util-linux) not found")
        standard = Path("/run/pcscd/pcscd.comm")
        if not _socket_alive(standard):
            standard.unlink(missing_ok=True)  # stale socket of a killed pcscd
            standard.parent.mkdir(parents=True, exist_ok=True)
            problem = self._launch(["sh", "-c", foreground], standard)
            if problem is None:
                self.socket_path = standard
                return self._started()
            problems.append(f"standard socket: {problem}")
        else:
            problems.append("a pcscd already serves /run/pcscd/pcscd.comm")
        raise PcscdUnavailable("cannot start a private pcscd: " + "; ".join(problems))

    def _launch(self, argv: list[str], socket_path: Path) -> str | None:
        """Start pcscd; None once its socket exists, else what went wrong."""
        log_path = self.workdir / "pcscd.log"
        with log_path.open("wb") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _socket_alive(socket_path):
                return None
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self._terminate()
        return log_path.read_text(errors="replace").strip()[-300:] or "no socket after 10 s"

    def _started(self) -> PrivatePcscd:
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
        self._terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> PrivatePcscd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
