"""The card login end to end in headless Chromium, nothing mocked (issue 15, "Must show"):

a business system's page (a Flask app built on Authlib's OpenID Connect client, served on a
free port) -> the provider (``sscard idp serve``: gunicorn, the real TokenValidator with the
cardholder CA and revocation fetched from the OCSP responder the card's certificate names)
-> its login page's sscard-login.js -> the browser agent (``sscard agent``, the PIN and the
consent on its own input pipes, never the page) -> the emulated card behind pcscd + vpcd signs
-> consent at the provider -> the business system exchanges the code and verifies the ID token
with the provider's JWKS, and shows the holder's name and social security number."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from authlib.integrations.flask_client import OAuth
from flask import Flask, Response, url_for
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ca.ocsp import OcspResponder
from ca.records import CertificateStatus, RevocationReason, Status
from tests.card.conftest import EmulatorProcess, PcscRig
from tests.cms.pki import make_crl
from tests.cms.revocation_http import Http
from tests.gateway.card import HOLDER_SSN
from tests.idp.agent_rig import PIN, Agent, running_agent
from tests.idp.idp_serve import ServedProvider, idp_serve
from tests.idp.login_pki import LoginPki, make_login_pki
from tests.idp.test_agent_browser import browser, card, card_file  # noqa: F401 (fixtures)
from tests.pg import free_port
from tests.ra.browser import serve


@pytest.fixture(scope="module")
def publication() -> Iterator[Http]:
    """The cardholder CA's publication point: its OCSP responder and CRLs over HTTP."""
    http = Http()
    yield http
    http.close()


@pytest.fixture(scope="module")
def revoked() -> list[datetime]:
    """When set, the OCSP responder says every certificate was revoked then."""
    return []


@pytest.fixture(scope="module")
def pki(publication: Http, revoked: list[datetime]) -> LoginPki:
    """Overrides test_agent_browser's: the card's certificate names the OCSP responder."""
    login_pki = make_login_pki(publication.url)

    def lookup(serial: int) -> CertificateStatus:
        if revoked:
            return CertificateStatus(serial, Status.REVOKED, revoked[0],
                                     RevocationReason.keyCompromise)
        return CertificateStatus(serial, Status.GOOD)

    publication.ocsp = OcspResponder(login_pki.ca.key, login_pki.ca.cert, login_pki.ca.cert,
                                     lookup)
    publication.root_crl = make_crl(login_pki.root).dump()
    publication.crl = make_crl(login_pki.ca).dump()
    return login_pki


@pytest.fixture
def agent_and_provider(pcsc_rig: PcscRig, pki: LoginPki,
                       tmp_path: Path) -> Iterator[tuple[Agent, ServedProvider]]:
    """The agent allows only the provider's origin; the provider's login page calls it."""
    port = free_port()
    with running_agent(pcsc_rig, tmp_path / "agent", [f"http://127.0.0.1:{port}"]) as agent, \
            idp_serve(tmp_path / "idp", port, pki.root.cert, pki.ca.cert,
                      agent_url=agent.url) as provider:
        yield agent, provider


def business_system(provider: ServedProvider) -> Iterator[str]:
    """A business system's web application: Authlib's Flask client with discovery and PKCE;
    Authlib verifies the ID token (signature with the provider's JWKS, iss, aud, nonce)."""
    app = Flask("business-system")
    app.secret_key = secrets.token_bytes(32)
    oauth = OAuth(app)

    @app.get("/login")
    def login() -> Any:
        return oauth.sscard.authorize_redirect(url_for("callback", _external=True))

    @app.get("/callback")
    def callback() -> Response:
        token = oauth.sscard.authorize_access_token()
        page = ('<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>已登录'
                '</title></head><body><pre id="claims">'
                + json.dumps(dict(token["userinfo"]), ensure_ascii=False)
                .replace("&", "&amp;").replace("<", "&lt;") + "</pre></body></html>")
        return Response(page, mimetype="text/html")

    for url in serve(app):
        client_id, secret = provider.add_client("就业登记系统", url + "/callback")
        oauth.register("sscard", client_id=client_id, client_secret=secret,
                       server_metadata_url=provider.url + "/.well-known/openid-configuration",
                       client_kwargs={"scope": "openid profile",
                                      "code_challenge_method": "S256"})
        yield url


def consent_page_or_refusal(wait: WebDriverWait[Any]) -> str:
    """The consent page's business system name, or the login page's message (a refusal)."""
    def shown(d: Any) -> str | None:
        try:
            if names := d.find_elements(By.ID, "client-name"):
                return str(names[0].text)
            status = d.find_elements(By.ID, "sscard-status")
            text = status[0].text if status else ""
        except StaleElementReferenceException:  # the page moved on between find and read
            return None
        return f"refused: {text}" if text and text != "正在读卡……" else None

    return str(wait.until(shown))


def test_cardholder_logs_in_to_a_business_system_in_chromium(
        browser: Any, agent_and_provider: tuple[Agent, ServedProvider],  # noqa: F811
        card: EmulatorProcess, publication: Http) -> None:  # noqa: F811
    agent, provider = agent_and_provider
    wait = WebDriverWait(browser, 90)
    for rp in business_system(provider):
        browser.get(rp + "/login")  # -> the provider's /authorize -> its login page
        wait.until(lambda d: d.find_elements(By.ID, "sscard-login"))
        assert browser.current_url.startswith(provider.url + "/login?")
        agent.consent(True)  # the holder allows this origin in the agent, once
        agent.give_pin(PIN)  # and types the PIN there: the page never sees it
        ocsp_before = publication.ocsp_requests
        browser.find_element(By.ID, "sscard-login").click()
        assert consent_page_or_refusal(wait) == "就业登记系统"
        assert publication.ocsp_requests > ocsp_before  # revocation asked of the CA's OCSP
        browser.find_element(By.CSS_SELECTOR, 'button[value="allow"]').click()
        wait.until(lambda d: d.find_elements(By.ID, "claims"))
        assert browser.current_url.startswith(rp + "/callback?")
        claims = json.loads(browser.find_element(By.ID, "claims").text)
        assert claims["name"] == "张三" and claims["sscard:ssn"] == HOLDER_SSN, claims
        assert claims["iss"] == provider.url and claims["amr"] == ["hwk", "pin"]
        assert json.loads(agent.consent_file.read_text())["origins"].keys() == {provider.url}



def test_a_card_revoked_at_the_ca_cannot_log_in(
        browser: Any, agent_and_provider: tuple[Agent, ServedProvider],  # noqa: F811
        card: EmulatorProcess, revoked: list[datetime]) -> None:  # noqa: F811
    agent, provider = agent_and_provider
    wait = WebDriverWait(browser, 90)
    revoked.append(datetime.now(UTC) - timedelta(hours=1))  # only OCSP knows
    try:
        for rp in business_system(provider):
            browser.get(rp + "/login")
            wait.until(lambda d: d.find_elements(By.ID, "sscard-login"))
            agent.consent(True)
            agent.give_pin(PIN)
            browser.find_element(By.ID, "sscard-login").click()
            shown = consent_page_or_refusal(wait)
            assert shown.startswith("refused: ") and "已被吊销" in shown, shown
            # nothing half-done: no session at the provider, no login at the business system
            browser.get(rp + "/login")
            wait.until(lambda d: d.find_elements(By.ID, "sscard-login"))
            assert browser.current_url.startswith(provider.url + "/login?")
    finally:
        revoked.clear()


def test_a_wrong_pin_shows_the_tries_left_and_the_holder_tries_again(
        browser: Any, agent_and_provider: tuple[Agent, ServedProvider],  # noqa: F811
        card: EmulatorProcess) -> None:  # noqa: F811
    agent, provider = agent_and_provider
    wait = WebDriverWait(browser, 90)
    for rp in business_system(provider):
        browser.get(rp + "/login")
        wait.until(lambda d: d.find_elements(By.ID, "sscard-login"))
        agent.consent(True)
        agent.give_pin("999999")
        browser.find_element(By.ID, "sscard-login").click()
        shown = consent_page_or_refusal(wait)
        assert shown == "refused: PIN 码错误，还可以尝试 2 次。", shown
        agent.give_pin(PIN)  # the same page, a second try: a fresh nonce, no consent again
        browser.find_element(By.ID, "sscard-login").click()
        wait.until(lambda d: d.find_elements(By.ID, "client-name"))
        browser.find_element(By.CSS_SELECTOR, 'button[value="allow"]').click()
        wait.until(lambda d: d.find_elements(By.ID, "claims"))
        claims = json.loads(browser.find_element(By.ID, "claims").text)
        assert claims["sscard:ssn"] == HOLDER_SSN, claims
