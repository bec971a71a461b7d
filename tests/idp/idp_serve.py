"""The provider as an operator runs it: ``sscard idp serve`` (gunicorn, its workers sharing one
SQLite database) on a free port, with a TOML configuration naming the cardholder CA, and
business systems registered with ``sscard idp client add``."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from asn1crypto import pem, x509
from click.testing import CliRunner

from sscard.cli import cli

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServedProvider:
    url: str
    home: Path
    db_url: str

    def add_client(self, name: str, redirect_uri: str, *extra: str) -> tuple[str, str]:
        """An administrator registers a business system: (client id, secret); ``extra``:
        more options of ``sscard idp client add`` (--grant-scope, --post-logout-redirect-uri)."""
        secret_file = self.home / f"client-{secrets.token_hex(4)}.secret"
        res = CliRunner().invoke(cli, [
            "--home", str(self.home), "idp", "client", "add", "--name", name,
            "--redirect-uri", redirect_uri, "--secret-file", str(secret_file),
            "--db-url", self.db_url, *extra])
        assert res.exit_code == 0, res.output
        return res.stdout.strip(), secret_file.read_text().strip()


def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):  # the workers boot; wait for an answer, not for a time
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert proc.poll() is None, "sscard idp serve exited"
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


@contextmanager
def idp_serve(home: Path, port: int, anchor: x509.Certificate, ca: x509.Certificate, *,
              agent_url: str = "http://127.0.0.1:24727", fetch_revocation: bool = True,
              workers: int = 2, more_config: str = "") -> Iterator[ServedProvider]:
    """``fetch_revocation``: from the publication points the CA certificates and the card's
    certificate name (OCSP, CRL), as in production; ``more_config``: TOML appended to the
    configuration (a ``[login_profiles]`` table, say)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "root.pem").write_bytes(pem.armor("CERTIFICATE", anchor.dump()))
    (home / "ca.pem").write_bytes(pem.armor("CERTIFICATE", ca.dump()))
    url = f"http://127.0.0.1:{port}"
    config = home / "idp.toml"
    config.write_text(f'issuer = "{url}"\nagent_url = "{agent_url}"\n'
                      'trust_anchors = ["root.pem"]\nintermediates = ["ca.pem"]\n'
                      f"fetch_revocation = {str(fetch_revocation).lower()}\n" + more_config)
    db_url = f"sqlite:///{home / 'idp.sqlite'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sscard.cli", "--home", str(home), "idp", "serve",
         "--config", str(config), "--db-url", db_url, "--port", str(port),
         "--workers", str(workers), "--threads", "2"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), start_new_session=True,
        stdin=subprocess.DEVNULL)
    try:
        _wait_up(url + "/health", proc)
        yield ServedProvider(url, home, db_url)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
