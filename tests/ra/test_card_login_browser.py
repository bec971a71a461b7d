"""The same card login for an RA officer, end to end in headless Chromium, nothing mocked
(issue 15, "Must show"): the RA's log-in page -> the provider (``sscard idp serve``, gunicorn,
the RA registered with ``--grant-scope sscard:cert``) -> its login page -> the browser agent
(``sscard agent``; PIN and consent on its own pipes) -> the emulated card behind pcscd + vpcd
signs -> consent -> the RA's callback (Authlib's client: state, PKCE, the ID token) -> the
officer's queue; then log-out through the provider (RP-initiated) back to the RA's log-in
page. The rigs are tests/idp's (agent, provider, login PKI), imported, not copied."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ra.cardlogin import CALLBACK, CardLoginConfig
from ra.models import Role
from ra.web import WebConfig, create_app
from tests.card.conftest import EmulatorProcess
from tests.gateway.card import HOLDER_SSN
from tests.idp.agent_rig import PIN, Agent
from tests.idp.idp_serve import ServedProvider
from tests.idp.test_agent_browser import browser, card, card_file  # noqa: F401 (fixtures)
from tests.idp.test_login_e2e import (  # noqa: F401 (fixtures)
    agent_and_provider,
    pki,
    publication,
    revoked,
)
from tests.ra.browser import serve
from tests.ra.rig import PASSWORD, RaRig, make_rig


@pytest.fixture
def ra_rig(tmp_path: Path) -> Iterator[RaRig]:
    r = make_rig(tmp_path / "ra")
    yield r
    r.close()


def served_ra(rig: RaRig, provider: ServedProvider) -> Iterator[str]:
    """The RA on a free port, registered at the provider as a confidential client with the
    certificate scope; the app is built once its URL (the redirect URI) is known."""
    real: list[Flask] = []
    shell = Flask("ra-shell")
    shell.wsgi_app = lambda environ, start: real[0](environ, start)  # type: ignore[method-assign]
    for url in serve(shell):
        client_id, secret = provider.add_client(
            "社保卡注册审核系统", url + CALLBACK, "--post-logout-redirect-uri", url + "/login",
            "--grant-scope", "sscard:cert")
        config = CardLoginConfig(provider.url, client_id, secret, url)
        real.append(create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False,
                                                 card_login=config)))
        yield url


def test_an_officer_logs_in_to_the_ra_with_the_card_in_chromium(
        browser: Any, agent_and_provider: tuple[Agent, ServedProvider],  # noqa: F811
        card: EmulatorProcess, card_file: Path, ra_rig: RaRig) -> None:  # noqa: F811
    agent, provider = agent_and_provider
    # the officer's account, with the certificate of their own card (an administrator's job)
    ra_rig.ra.add_officer(None, "zhangsan", "张三", PASSWORD, {Role.OFFICER},
                          person_id=HOLDER_SSN)
    ra_rig.ra.set_officer_certificate(None, "zhangsan", card_file.with_suffix(".cer")
                                      .read_bytes())
    wait = WebDriverWait(browser, 90)
    for ra in served_ra(ra_rig, provider):
        browser.get(ra + "/login")
        browser.find_element(By.ID, "card-login").click()  # 使用本人社保卡登录
        wait.until(lambda d: d.find_elements(By.ID, "sscard-login"))
        assert browser.current_url.startswith(provider.url + "/login?")
        agent.consent(True)
        agent.give_pin(PIN)  # in the agent, never the page
        browser.find_element(By.ID, "sscard-login").click()
        wait.until(lambda d: d.find_elements(By.ID, "client-name"))
        assert browser.find_element(By.ID, "client-name").text == "社保卡注册审核系统"
        browser.find_element(By.CSS_SELECTOR, 'button[value="allow"]').click()
        wait.until(lambda d: d.find_elements(By.ID, "logout"))
        assert browser.current_url == ra + "/", browser.current_url  # the officer's queue
        browser.get(ra + "/batches")  # an officer's page: the role came from the database
        assert "403" not in browser.title and browser.current_url == ra + "/batches"
        # log out: the RA's session, then the provider's (RP-initiated), back to the RA
        browser.find_element(By.ID, "logout").click()
        wait.until(lambda d, ra=ra: d.current_url.startswith(ra + "/login"))
        browser.get(ra + "/batches")
        assert browser.current_url.startswith(ra + "/login")
        browser.find_element(By.ID, "card-login").click()  # the provider asks for the card
        wait.until(lambda d: d.find_elements(By.ID, "sscard-login"))
        assert browser.current_url.startswith(provider.url + "/login?")
