"""The provider sections of docs/login-integration.md run as written: the ```sh block registers
the business system with the installed ``sscard``, the ```python block is the business system
(Flask + Authlib's client), and a cardholder logs in through it with the emulated card."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.card import HOLDER_SSN
from tests.idp.provider_rig import Rig, serve

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "login-integration.md"
BLOCK = re.compile(r"^```(python|sh)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(kind: str) -> list[str]:
    return [m.group(2) for m in BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))
            if m.group(1) == kind]


@pytest.fixture()
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield from serve(f"sqlite:///{tmp_path / 'idp.sqlite'}")


def test_the_guide_registers_a_client_and_logs_a_cardholder_in(
        rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register = _blocks("sh")[0]  # the business system's (the RA's, with sscard:cert, follows)
    env = dict(os.environ, SSCARD_IDP_DB_URL=f"sqlite:///{tmp_path / 'idp.sqlite'}",
               SSCARD_HOME=str(tmp_path / "home"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", "-e", "-c", register], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "rp-client.secret").stat().st_mode & 0o077 == 0

    (business_system,) = _blocks("python")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IDP_URL", rig.url)
    namespace: dict[str, Any] = {"__name__": "guide"}
    exec(compile(business_system, str(GUIDE), "exec"), namespace)
    web = namespace["app"].test_client()

    start = web.get("/login", base_url="http://127.0.0.1:8000")
    assert start.status_code == 302 and start.location.startswith(rig.url + "/authorize?")
    back = rig.login(rig.browser(), start.location)
    assert back.status_code == 302, back.text
    callback = back.headers["Location"]
    assert callback.startswith("http://127.0.0.1:8000/callback?")
    page = web.get(callback.removeprefix("http://127.0.0.1:8000"),
                   base_url="http://127.0.0.1:8000")
    assert page.status_code == 200 and page.text == "你好，张三"
    with web.session_transaction("/", base_url="http://127.0.0.1:8000") as session:
        assert session["user"]["sscard:ssn"] == HOLDER_SSN
