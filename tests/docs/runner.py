"""One document's examples run in order, as a reader would type them, in a fresh directory.

The directory stands for the project's checkout (`scripts/`, `deploy/`, `bench/`, `Makefile` and
`.venv` are linked into it), so the relative paths the documents use resolve. Each block runs in
a private mount namespace in which fresh empty directories are mounted over `/srv` and `/mnt`:
the documents' absolute example paths (`/srv/ca`, `/mnt/backup`) work and nothing outside the
test's directory is touched. Exported variables, the current directory and the umask carry
over from one block to the next, as in one terminal. `make serve` runs in the background
(scripts/serve.py with free ports) until the document is done, and so does `sscard card
emulate`, attached to a private pcscd (with vsmartcard's vpcd) that stands for the machine's
PC/SC service: the blocks after it see its readers. A later `sscard card emulate` block stops
the running card first (Ctrl-C, "pulling the card") and puts its own into the same reader.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sscard.emulator.pcscd import CARD_READER, PcscdUnavailable, PrivatePcscd
from tests.docs.markdown import ROOT, SHELL, Block

SERVE_READY = "sscard all-in-one system is up"
MOUNTED = ("/srv", "/mnt")
LINKED = ("scripts", "deploy", "bench", "Makefile", "pyproject.toml")
BLOCK_TIMEOUT = 300


class ExampleFailed(AssertionError):
    pass


class DocSession:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir(parents=True)
        for name in LINKED:
            (self.work / name).symlink_to(ROOT / name)
        (self.work / ".venv").symlink_to(Path(sys.prefix))
        self.mounts = {m: root / ("mount" + m.replace("/", "-")) for m in MOUNTED}
        for d in self.mounts.values():
            d.mkdir()
        self.state = root / "state.sh"
        self.state.write_text(f"cd {shlex.quote(str(self.work))}\n", encoding="utf-8")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SSCARD_") or k == "SSCARD_CONFORMANCE"}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["PYTHONPATH"] = str(ROOT)
        self.service: subprocess.Popen[str] | None = None
        self.emulator: subprocess.Popen[str] | None = None
        self.pcscd: Any = None
        self.service_lines: list[str] = []
        self.failed: str | None = None
        self.count = 0
        self.done: list[Block] = []

    # -- running blocks ---------------------------------------------------------------------

    def run(self, block: Block) -> None:
        if self.failed:
            raise ExampleFailed(f"{block.where}: not run, an earlier example of this document "
                                f"failed ({self.failed})")
        try:
            if block.lang in SHELL and block.commands() == ["make serve"]:
                self.start_serve(block)
            elif (block.lang in SHELL and len(block.commands()) == 1
                  and block.commands()[0].startswith("sscard card emulate ")):
                self.start_emulator(block)
            else:
                self.run_block(block)
        except ExampleFailed:
            self.failed = block.where
            raise
        self.done.append(block)

    def _mounts(self) -> str:
        return "".join(f"mount --bind {shlex.quote(str(src))} {dst}\n"
                       for dst, src in self.mounts.items())

    def run_block(self, block: Block) -> None:
        self.count += 1
        mounts = self._mounts()
        if block.file is not None:
            code = self.root / f"example-{self.count}.file"
            code.write_text(block.text, encoding="utf-8")
            body = f"cp {shlex.quote(str(code))} {shlex.quote(block.file)}\n"
        elif block.lang == "python":
            code = self.root / f"example-{self.count}.py"
            code.write_text(block.text, encoding="utf-8")
            body = f"python {shlex.quote(str(code))}\n"
        else:
            code = self.root / f"example-{self.count}.sh"
            code.write_text(block.shell_text(), encoding="utf-8")
            body = f"set -e -o pipefail\nsource {shlex.quote(str(code))}\n"
        save = (f"{{ export -p; printf 'cd %q\\numask %s\\n' \"$PWD\" \"$(umask)\"; }} > "
                f"{shlex.quote(str(self.state))}.new && "
                f"mv {shlex.quote(str(self.state))}.new {shlex.quote(str(self.state))}\n")
        script = (f"set -e\n{mounts}source {shlex.quote(str(self.state))}\n"
                  f"{body}{save}")
        res = subprocess.run(["unshare", "--mount", "--propagation", "private",
                              "bash", "-c", script],
                             env=self.env, capture_output=True, text=True,
                             timeout=BLOCK_TIMEOUT, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise ExampleFailed(
                f"{block.where}: the {block.lang} example exited {res.returncode}\n"
                f"--- example ---\n{block.text}--- stdout ---\n{res.stdout[-6000:]}"
                f"--- stderr ---\n{res.stderr[-6000:]}{self.service_tail()}")

    # -- make serve --------------------------------------------------------------------------

    def start_serve(self, block: Block) -> None:
        if self.service is not None:
            raise ExampleFailed(f"{block.where}: `make serve` is already running")
        self.service = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "serve.py"), "--home", "serve-data",
             "--any-ports"],
            cwd=self.work, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        ready = threading.Event()
        proc = self.service

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.service_lines.append(line.rstrip("\n"))
                if SERVE_READY in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + BLOCK_TIMEOUT
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ExampleFailed(f"{block.where}: `make serve` did not come up"
                                    f"{self.service_tail()}")

    # -- sscard card emulate -----------------------------------------------------------------

    def start_emulator(self, block: Block) -> None:
        if self.emulator is not None:  # one card per reader: pull the running one first
            self._stop_emulator()
            deadline = time.monotonic() + 60
            while self._card_present():
                if time.monotonic() > deadline:
                    raise ExampleFailed(f"{block.where}: the previous emulated card stayed "
                                        "in the reader")
                time.sleep(0.2)
        if self.pcscd is None:
            saved = os.environ.get("PCSCLITE_CSOCK_NAME")
            try:
                self.pcscd = ChildCheckedPcscd(self.root / "pcscd").start()
            except PcscdUnavailable as exc:
                raise ExampleFailed(f"{block.where}: no private pcscd for the card: {exc}") \
                    from None
            finally:  # PrivatePcscd points this process at it; the other tests keep theirs
                if saved is None:
                    os.environ.pop("PCSCLITE_CSOCK_NAME", None)
                else:
                    os.environ["PCSCLITE_CSOCK_NAME"] = saved
            self.env.update(PCSCLITE_CSOCK_NAME=str(self.pcscd.socket_path),
                            SSCARD_VPCD_PORT=str(self.pcscd.port))
        script = (f"set -e\n{self._mounts()}source {shlex.quote(str(self.state))}\n"
                  f"exec {block.commands()[0]}\n")
        self.emulator = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, start_new_session=True)

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.emulator.poll() is not None:
                out = self.emulator.stdout.read() if self.emulator.stdout else ""
                raise ExampleFailed(f"{block.where}: the emulated card stopped:\n{out}")
            if self._card_present():
                return
            time.sleep(0.2)
        raise ExampleFailed(f"{block.where}: the emulated card did not reach the reader")

    def _card_present(self) -> bool:
        res = subprocess.run(["sscard", "card", "readers"], env=self.env, capture_output=True,
                             text=True, timeout=60)
        return "card present" in res.stdout

    def service_tail(self) -> str:
        if self.service is None:
            return ""
        return "\n--- make serve ---\n" + "\n".join(self.service_lines[-40:])

    def _stop_emulator(self) -> None:
        if self.emulator is None:
            return
        os.killpg(self.emulator.pid, signal.SIGINT)
        try:
            self.emulator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.emulator.kill()
            self.emulator.wait()
        self.emulator = None

    def close(self) -> None:
        self._stop_emulator()
        if self.pcscd is not None:
            self.pcscd.stop()
            self.pcscd = None
        if self.service is None:
            return
        try:
            os.killpg(self.service.pid, signal.SIGINT)
            self.service.wait(timeout=60)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            self.service.kill()
            self.service.wait()
        self.service = None


class ChildCheckedPcscd(PrivatePcscd):
    """A private pcscd whose readers are looked for by a child process: libpcsclite keeps the
    first pcscd socket it was pointed at for a process's life, so a PC/SC call in the test
    process would tie it (and every later test in it) to this document's pcscd."""

    def _wait_readers(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            res = subprocess.run([sys.executable, "-m", "sscard.cli", "card", "readers"],
                                 env={**self.env, "PYTHONPATH": str(ROOT)},
                                 capture_output=True, text=True, timeout=60)
            if CARD_READER in res.stdout:
                return
            time.sleep(0.2)
        raise PcscdUnavailable("the vpcd readers did not appear")
