"""The browser agent over real PC/SC (pcscd + vpcd + the emulated card): allow-list and CORS,
consent per origin remembered in a 0600 file, the token it signs validated by the provider's
TokenValidator, and each card state as a clear error: wrong PIN (tries left), blocked PIN, no
card, no reader, card pulled during the PIN prompt. The PIN comes from the agent's own input."""

from __future__ import annotations

import json
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sscard.idp.authtoken import AuthToken, NonceStore, TokenValidator
from tests.card.conftest import CARD_READER, EmulatorProcess, PcscRig
from tests.gateway.card import HOLDER_SSN
from tests.idp.agent_rig import (
    PIN,
    Agent,
    inserted_card,
    personalised_card,
    running_agent,
)
from tests.idp.login_pki import LoginPki, make_login_pki

RP = "https://rp.example:8443"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def pki() -> LoginPki:
    return make_login_pki()


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
def agent(pcsc_rig: PcscRig, tmp_path: Path) -> Iterator[Agent]:
    with running_agent(pcsc_rig, tmp_path / "agent", [RP]) as a:
        yield a


def call(agent: Agent, method: str, path: str, origin: str | None = RP,
         body: dict[str, Any] | None = None) -> requests.Response:
    headers = {"Origin": origin} if origin else {}
    return requests.request(method, agent.url + path, headers=headers, json=body, timeout=60)


def consented(agent: Agent) -> None:
    agent.consent_file.parent.mkdir(parents=True, exist_ok=True)
    agent.consent_file.write_text(json.dumps({"origins": {RP: "2026-12-01T00:00:00+00:00"}}))


def test_readers_for_an_allowed_origin(agent: Agent, card: EmulatorProcess) -> None:
    answer = call(agent, "GET", "/v1/readers")
    assert answer.status_code == 200, answer.text
    assert {"name": CARD_READER, "card_present": True} in answer.json()["readers"]
    assert answer.headers["Access-Control-Allow-Origin"] == RP


@pytest.mark.parametrize("origin", [EVIL, None, "null", RP + "/"])
def test_other_origins_get_403_and_nothing(agent: Agent, card: EmulatorProcess,
                                           origin: str | None) -> None:
    for method, path in (("GET", "/v1/readers"), ("GET", "/v1/certificate"),
                         ("POST", "/v1/sign"), ("OPTIONS", "/v1/sign")):
        answer = call(agent, method, path, origin, {"origin": origin, "nonce": "A" * 43})
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["code"] == "ORIGIN_NOT_ALLOWED"
        assert "Access-Control-Allow-Origin" not in answer.headers
        assert CARD_READER not in answer.text and "vpcd" not in answer.text.lower()
    assert not agent.consent_file.exists()  # nobody was asked


def test_preflight_for_an_allowed_origin(agent: Agent) -> None:
    answer = requests.options(agent.url + "/v1/sign", headers={
        "Origin": RP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
        "Access-Control-Request-Private-Network": "true"}, timeout=10)
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == RP
    assert answer.headers["Access-Control-Allow-Private-Network"] == "true"


def test_a_rebinding_host_name_is_refused(agent: Agent) -> None:
    answer = requests.get(agent.url + "/v1/readers",
                          headers={"Origin": RP, "Host": "rp.example"}, timeout=10)
    assert answer.status_code == 403 and answer.json()["code"] == "FORBIDDEN_HOST"


def test_consent_is_asked_once_and_remembered(agent: Agent, card: EmulatorProcess) -> None:
    agent.consent(False)
    refused = call(agent, "GET", "/v1/certificate")
    assert refused.status_code == 403 and refused.json()["code"] == "CONSENT_REFUSED"
    assert not agent.consent_file.exists()
    agent.consent(True)
    assert call(agent, "GET", "/v1/certificate").status_code == 200
    assert stat.S_IMODE(agent.consent_file.stat().st_mode) == 0o600
    assert RP in json.loads(agent.consent_file.read_text())["origins"]
    # not asked again: no answer is waiting in the pipe, and the call still succeeds
    assert call(agent, "GET", "/v1/certificate").status_code == 200


def test_login_token_from_the_card_validates(agent: Agent, card: EmulatorProcess,
                                             pki: LoginPki, tmp_path: Path) -> None:
    consented(agent)
    nonces = NonceStore(f"sqlite:///{tmp_path / 'nonces.db'}")
    nonce = nonces.issue()
    agent.give_pin(PIN)
    answer = call(agent, "POST", "/v1/sign", body={"origin": RP, "nonce": nonce})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == RP
    token = AuthToken.from_json(answer.json())
    who = TokenValidator(pki.trust(), nonces=nonces).validate(token, RP, nonce)
    assert (who.name, who.ssn) == ("张三", HOLDER_SSN)
    cert = call(agent, "GET", "/v1/certificate").json()["certificate"]
    assert cert == answer.json()["certificate"]


@pytest.mark.parametrize("body, code", [
    ({"origin": EVIL, "nonce": "A" * 43}, "ORIGIN_MISMATCH"),
    ({"nonce": "A" * 43}, "ORIGIN_MISMATCH"),
    ({"origin": RP, "nonce": "pay 1000 yuan to account 42"}, "BAD_NONCE"),
    ({"origin": RP, "nonce": "A" * 65}, "BAD_NONCE"),
    ({"origin": RP, "nonce": 12345678901234567890}, "BAD_NONCE"),
])
def test_sign_refuses_anything_but_the_login_construction(
        agent: Agent, card: EmulatorProcess, body: dict[str, Any], code: str) -> None:
    consented(agent)
    answer = call(agent, "POST", "/v1/sign", body=body)
    assert answer.status_code == 400 and answer.json()["code"] == code, answer.text


def test_wrong_pin_shows_tries_left(agent: Agent, card: EmulatorProcess) -> None:
    consented(agent)
    agent.give_pin("000000")
    answer = call(agent, "POST", "/v1/sign", body={"origin": RP, "nonce": "A" * 43})
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "PIN_WRONG" and answer.json()["tries_left"] == "2"
    assert "2 tries left" in answer.json()["detail"]


def test_blocked_pin(pcsc_rig: PcscRig, agent: Agent, pki: LoginPki, tmp_path: Path) -> None:
    consented(agent)
    blocked = personalised_card(pki, tmp_path / "blocked.json", pin_tries_left=0)
    with inserted_card(pcsc_rig, blocked):
        agent.give_pin(PIN)
        answer = call(agent, "POST", "/v1/sign", body={"origin": RP, "nonce": "A" * 43})
        assert answer.status_code == 403 and answer.json()["code"] == "PIN_BLOCKED", answer.text


def test_no_card(agent: Agent) -> None:
    consented(agent)
    answer = call(agent, "POST", "/v1/sign", body={"origin": RP, "nonce": "A" * 43})
    assert answer.status_code == 503 and answer.json()["code"] == "NO_CARD", answer.text


def test_no_reader(pcsc_rig: PcscRig, tmp_path: Path) -> None:
    with running_agent(pcsc_rig, tmp_path, [RP], "--reader", "Absent Reader 00 00") as a:
        consented(a)
        answer = call(a, "GET", "/v1/certificate")
        assert answer.status_code == 503 and answer.json()["code"] == "NO_READER", answer.text


def test_card_pulled_during_the_pin_prompt(agent: Agent, card: EmulatorProcess) -> None:
    consented(agent)
    result: dict[str, requests.Response] = {}
    request = threading.Thread(target=lambda: result.setdefault("answer", call(
        agent, "POST", "/v1/sign", body={"origin": RP, "nonce": "A" * 43})))
    request.start()
    assert RP in agent.wait_pin_prompt()
    card.stop()  # the holder pulls the card while typing the PIN
    agent.give_pin(PIN)
    request.join(timeout=60)
    answer = result["answer"]
    assert answer.status_code == 503 and answer.json()["code"] == "CARD_REMOVED", answer.text


def test_a_pin_that_is_no_pin_costs_no_try(agent: Agent, card: EmulatorProcess) -> None:
    consented(agent)
    for typo in ("12ab56", "123"):
        agent.give_pin(typo)
        answer = call(agent, "POST", "/v1/sign", body={"origin": RP, "nonce": "A" * 43})
        assert answer.status_code == 400 and answer.json()["code"] == "PIN_INVALID", answer.text
    agent.give_pin("")  # the holder closes the prompt
    answer = call(agent, "POST", "/v1/sign", body={"origin": RP, "nonce": "A" * 43})
    assert answer.json()["code"] == "PIN_CANCELLED"
    agent.give_pin("000000")
    answer = call(agent, "POST", "/v1/sign", body={"origin": RP, "nonce": "A" * 43})
    assert answer.json()["tries_left"] == "2"  # the typos used none of the three


@pytest.mark.parametrize("allow, message", [
    ('origins = ["https://rp.example/login"]', "not a web origin"),
    ('origins = "https://rp.example"', "must be a list"),
    ("origins = [", "allow-list"),
])
def test_a_bad_allow_list_stops_the_agent(tmp_path: Path, allow: str, message: str) -> None:
    import subprocess
    import sys

    (tmp_path / "allow.toml").write_text(allow)
    proc = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "agent", "--allow-list", str(tmp_path / "allow.toml"),
         "--consent-file", str(tmp_path / "consent.json"), "--port", "0", "--pin-from-fd", "0"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "listening" not in proc.stdout and not (tmp_path / "consent.json").exists()


def test_without_a_terminal_the_agent_wants_a_pin_source(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "allow.toml").write_text(f'origins = ["{RP}"]')
    proc = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "agent", "--allow-list", str(tmp_path / "allow.toml"),
         "--port", "0"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "--pin-from-fd" in proc.stderr, proc.stderr


def test_a_second_agent_on_a_taken_port_says_so_and_stops(agent: Agent, tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "allow.toml").write_text(f'origins = ["{RP}"]')
    port = agent.url.rsplit(":", 1)[1]
    proc = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "agent", "--allow-list", str(tmp_path / "allow.toml"),
         "--port", port, "--pin-from-fd", "0"], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr
    # werkzeug's own message, and nothing else
    assert f"Port {port} is in use" in proc.stderr and "Traceback" not in proc.stderr


def test_the_pin_does_not_stay_verified_after_a_login(agent: Agent, card: EmulatorProcess,
                                                      tmp_path: Path) -> None:
    """After the agent's login, another program on the computer finds the card's PKI key
    locked again: it cannot have the card sign without the PIN."""
    from sscard.card.client import CardClient
    from sscard.card.errors import SecurityStatusNotSatisfied
    from sscard.card.transport import PcscTransport

    consented(agent)
    agent.give_pin(PIN)
    answer = call(agent, "POST", "/v1/sign", body={"origin": RP, "nonce": "A" * 43})
    assert answer.status_code == 200, answer.text
    with CardClient(PcscTransport(CARD_READER)) as client:
        client.select_pki()
        with pytest.raises(SecurityStatusNotSatisfied):
            client.sign_digest(b"\x11" * 32)


def test_no_other_program_reaches_the_card_during_a_login(agent: Agent,
                                                          card: EmulatorProcess) -> None:
    """While the agent holds the card for a login (PIN asked, then verified), another program
    cannot connect to it and slip in a signature of its own."""
    from sscard.card.client import CardClient
    from sscard.card.errors import ReaderError
    from sscard.card.transport import PcscTransport

    consented(agent)
    result: dict[str, requests.Response] = {}
    request = threading.Thread(target=lambda: result.setdefault("answer", call(
        agent, "POST", "/v1/sign", body={"origin": RP, "nonce": "A" * 43})))
    request.start()
    agent.wait_pin_prompt()
    with pytest.raises(ReaderError):
        CardClient(PcscTransport(CARD_READER)).connect()
    agent.give_pin(PIN)
    request.join(timeout=60)
    assert result["answer"].status_code == 200, result["answer"].text
