"""The KMC served by gunicorn on PostgreSQL (its database and the audit log): both workers
unseal and record at once, escrow works through either, and the audit log verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from keymgmt.client import KmcClient
from sscard.crypto import envelopes
from sscard.crypto.sm2 import SM2PrivateKey
from tests.deploy.tlsfiles import free_port
from tests.pg import PostgresCluster, pg_cluster  # noqa: F401  (fixture)


def _sscard(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "sscard.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=120, env=env,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"sscard {' '.join(args)}: {done.stderr}"
    return done


def test_kmc_under_gunicorn_on_postgresql(pg_cluster: PostgresCluster,  # noqa: F811
                                          tmp_path: Path) -> None:
    env = {**os.environ, "SSCARD_KMC_DB_URL": pg_cluster.create_database("serve_kmc"),
           "SSCARD_AUDIT_DB_URL": pg_cluster.create_database("serve_audit")}
    home = tmp_path / "home"
    args = ["kmc", "ceremony", "--threshold", "2", "--shares-dir", str(tmp_path / "shares"),
            "--officiant", "test"]
    for name in ("zhang", "li", "wang"):
        (tmp_path / f"{name}.pass").write_text(f"{name} passphrase 1\n")
        (tmp_path / f"{name}.pass").chmod(0o600)
        args += ["--custodian", name, "--custodian-passphrase-file",
                 str(tmp_path / f"{name}.pass")]
    _sscard(home, env, *args)
    _sscard(home, env, "kmc", "caller", "add", "ra", "--role", "ra", "--key-out",
            str(tmp_path / "ra.key"))
    shares: list[str] = []
    for name in ("zhang", "li"):
        shares += ["--share", str(next((tmp_path / "shares").glob(f"share-*-{name}.json"))),
                   "--share-passphrase-file", str(tmp_path / f"{name}.pass")]
    port = free_port()
    log = tmp_path / "kmc.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sscard.cli", "--home", str(home), "kmc", "serve",
             "--port", str(port), "--workers", "2", *shares], env=env, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(url + "/health", timeout=2).json()["sealed"] is False:
                    break
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine: try again
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        ra = KmcClient(url, (tmp_path / "ra.key").read_text().strip())
        for i in range(6):  # new connections: both workers escrow
            card = SM2PrivateKey.generate()
            escrowed = ra.escrow(f"owner-{i}", card.public_key().spki_der())
            assert escrowed.enveloped_key_blob is not None
            key = envelopes.unwrap(escrowed.enveloped_key_blob, card)
            assert key.public_key().spki_der() == escrowed.public_key_spki
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    assert "development server" not in log.read_text()
    _sscard(home, env, "audit", "verify")  # exit 0: one intact chain on PostgreSQL
    assert "chain intact" in _sscard(home, env, "kmc", "ceremony-log").stdout
    shown = _sscard(home, env, "audit", "show").stdout
    assert shown.count("kmc.escrow.generate") >= 6 and "kmc.ceremony.unseal" in shown
