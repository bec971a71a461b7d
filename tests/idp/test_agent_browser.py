"""sscard-login.js in headless Chromium against the real agent (its own process, the emulated
card behind pcscd + vpcd): a tiny relying-party page gets a nonce from its server, the agent
signs it after the PIN arrives on the agent's own input, the server validates the token with
TokenValidator. Then the clear failures: no agent running, a page not on the allow-list, no
card, a blocked PIN."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request, session

import sscard.idp
from sscard.idp.authtoken import AuthToken, NonceStore, TokenError, TokenValidator
from tests.card.conftest import EmulatorProcess, PcscRig
from tests.gateway.card import HOLDER_SSN
from tests.idp.agent_rig import (
    PIN,
    Agent,
    inserted_card,
    personalised_card,
    running_agent,
)
from tests.idp.login_pki import LoginPki, make_login_pki
from tests.ra.browser import chromium, serve

SCRIPT = Path(sscard.idp.__file__).parent / "static" / "sscard-login.js"
PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>RP</title>
<script src="/sscard-login.js"></script></head><body><p>社保卡登录</p></body></html>"""
LOGIN = """
const done = arguments[arguments.length - 1];
SscardLogin.start({agentUrl: arguments[0], nonceUrl: "/nonce", tokenUrl: "/token"})
  .then(answer => done({answer: answer}),
        error => done({code: error.code, message: error.message}));
"""


@pytest.fixture(scope="module")
def pki() -> LoginPki:
    return make_login_pki()


def rp_app(pki: LoginPki, nonces: NonceStore, origin: list[str]) -> Flask:
    """The relying party's server side: nonce out, token in, the holder back."""
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)
    validator = TokenValidator(pki.trust(), nonces=nonces)

    @app.get("/")
    def page() -> Response:
        return Response(PAGE, mimetype="text/html")

    @app.get("/sscard-login.js")
    def script() -> Response:
        return Response(SCRIPT.read_text(encoding="utf-8"), mimetype="text/javascript")

    @app.post("/nonce")
    def nonce() -> Response:
        session["nonce"] = nonces.issue()  # the login's nonce stays with this browser
        return jsonify({"nonce": session["nonce"]})

    @app.post("/token")
    def token() -> Any:
        try:
            who = validator.validate(AuthToken.from_json(request.get_json()), origin[0],
                                     session.pop("nonce", ""))
        except TokenError as exc:
            return jsonify({"code": exc.code, "detail": exc.message}), 400
        return jsonify({"name": who.name, "ssn": who.ssn})

    return app


@pytest.fixture(scope="module")
def rp(pki: LoginPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    nonces = NonceStore(f"sqlite:///{tmp_path_factory.mktemp('rp') / 'nonces.db'}")
    origin: list[str] = []
    for url in serve(rp_app(pki, nonces, origin)):
        origin.append(url)
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture(scope="module")
def card_file(pki: LoginPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return personalised_card(pki, tmp_path_factory.mktemp("card") / "card.json")


@pytest.fixture
def card(pcsc_rig: PcscRig, card_file: Path, tmp_path: Path) -> Iterator[EmulatorProcess]:
    state = tmp_path / "card.json"
    shutil.copy(card_file, state)
    with inserted_card(pcsc_rig, state) as emu:
        yield emu


@pytest.fixture
def agent(pcsc_rig: PcscRig, rp: str, tmp_path: Path) -> Iterator[Agent]:
    with running_agent(pcsc_rig, tmp_path / "agent", [rp]) as a:
        a.consent_file.write_text(json.dumps({"origins": {rp: "2026-12-01T00:00:00+00:00"}}))
        yield a


def login(browser: Any, page: str, agent_url: str) -> dict[str, Any]:
    browser.get(page)
    browser.set_script_timeout(90)
    result: dict[str, Any] = browser.execute_async_script(LOGIN, agent_url)
    return result


def test_login_from_the_page(browser: Any, rp: str, agent: Agent,
                             card: EmulatorProcess) -> None:
    agent.give_pin(PIN)  # the holder types it in the agent, not in the page
    result = login(browser, rp + "/", agent.url)
    assert result.get("answer") == {"name": "张三", "ssn": HOLDER_SSN}, result


def test_no_agent(browser: Any, rp: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = login(browser, rp + "/", f"http://127.0.0.1:{port}")
    assert result["code"] == "NO_AGENT", result
    assert "sscard agent" in result["message"]


def test_page_not_on_the_allow_list(browser: Any, rp: str, agent: Agent,
                                    card: EmulatorProcess) -> None:
    other = rp.replace("127.0.0.1", "localhost")  # another origin, same page
    result = login(browser, other + "/", agent.url)
    assert result["code"] == "ORIGIN_NOT_ALLOWED", result
    assert "允许列表" in result["message"]


def test_no_card(browser: Any, rp: str, agent: Agent) -> None:
    result = login(browser, rp + "/", agent.url)
    assert result["code"] == "NO_CARD", result
    assert "插入社保卡" in result["message"]


def test_blocked_pin(browser: Any, rp: str, agent: Agent, pcsc_rig: PcscRig, pki: LoginPki,
                     tmp_path: Path) -> None:
    with inserted_card(pcsc_rig, personalised_card(pki, tmp_path / "blocked.json", 0)):
        agent.give_pin(PIN)
        result = login(browser, rp + "/", agent.url)
    assert result["code"] == "PIN_BLOCKED", result
    assert "锁定" in result["message"]


def test_wrong_pin_shows_tries_left(browser: Any, rp: str, agent: Agent,
                                    card: EmulatorProcess) -> None:
    agent.give_pin("999999")
    result = login(browser, rp + "/", agent.url)
    assert result["code"] == "PIN_WRONG", result
    assert "2 次" in result["message"]
