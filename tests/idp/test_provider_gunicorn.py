"""The provider under gunicorn with two workers sharing one database: the same keys and
session key in every worker, and a key rotated by the CLI reaches every worker at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sscard.idp.provider import new_signing_key
from sscard.idp.store import IdpStore
from tests.pg import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('idp-gunicorn') / 'idp.sqlite'}"
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tests.idp.serve_standin", db_url,
                             str(port)], cwd=ROOT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # the workers boot; wait for answers, not for a time
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, "gunicorn exited"
            time.sleep(0.1)
        yield url, db_url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_every_worker_publishes_the_same_keys_and_a_rotation_at_once(
        served: tuple[str, str]) -> None:
    url, db_url = served
    seen = {tuple(sorted(k["kid"] for k in requests.get(url + "/jwks.json").json()["keys"]))
            for _ in range(20)}
    assert len(seen) == 1
    kid = new_signing_key(IdpStore(db_url))
    for _ in range(20):  # whichever worker answers
        assert kid in {k["kid"] for k in requests.get(url + "/jwks.json").json()["keys"]}


def test_the_session_of_one_worker_is_read_by_the_others(served: tuple[str, str]) -> None:
    url, _ = served
    for _ in range(10):
        browser = requests.Session()
        browser.post(url + "/login/nonce")
        # a session the answering worker could not read would say NONCE_UNKNOWN
        answer = browser.post(url + "/login/token", data=b"junk",
                              headers={"Content-Type": "application/json"})
        assert answer.json()["code"] == "MALFORMED"
