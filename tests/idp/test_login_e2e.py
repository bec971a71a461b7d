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
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from authlib.integrations.flask_client import OAuth
from click.testing import CliRunner
from flask import Flask, Response, url_for
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ca.ocsp import OcspResponder
from ca.records import CertificateStatus, RevocationReason, Status
from sscard.cli import cli
from tests.card.conftest import EmulatorProcess, PcscRig
from tests.cms.pki import make_crl
from tests.cms.test_revocation_sources import Http
from tests.gateway.card import HOLDER_SSN
from tests.idp.agent_rig import PIN, Agent, running_agent
from tests.idp.login_pki import LoginPki, make_login_pki
from tests.idp.test_agent_browser import browser, card, card_file  # noqa: F401 (fixtures)
from tests.pg import free_port
from tests.ra.browser import serve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def publication() -> Iterator[Http]:
    """The cardholder CA's publication point: its OCSP responder and CRLs over HTTP."""
    http = Http()
    yield http
    http.close()


@pytest.fixture(scope="module")
def revoked() -> dict[int, Any]:
    return {}


@pytest.fixture(scope="module")
def pki(publication: Http, revoked: dict[int, Any]) -> LoginPki:
    """Overrides test_agent_browser's: the card's certificate names the OCSP responder."""
    login_pki = make_login_pki(publication.url)

    def lookup(serial: int) -> CertificateStatus:
        if serial in revoked:
            return CertificateStatus(serial, Status.REVOKED, revoked[serial],
                                     RevocationReason.keyCompromise)
        return CertificateStatus(serial, Status.GOOD)

    publication.ocsp = OcspResponder(login_pki.ca.key, login_pki.ca.cert, login_pki.ca.cert,
                                     lookup)
    publication.root_crl = make_crl(login_pki.root).dump()
    publication.crl = make_crl(login_pki.ca).dump()
    return login_pki


class Provider:
    def __init__(self, url: str, home: Path, db_url: str) -> None:
        self.url, self.home, self.db_url = url, home, db_url

    def add_client(self, name: str, redirect_uri: str) -> tuple[str, str]:
        """An administrator registers the business system (``sscard idp client add``)."""
        secret_file = self.home / f"client-{secrets.token_hex(4)}.secret"
        res = CliRunner().invoke(cli, [
            "--home", str(self.home), "idp", "client", "add", "--name", name,
            "--redirect-uri", redirect_uri, "--secret-file", str(secret_file),
            "--db-url", self.db_url])
        assert res.exit_code == 0, res.output
        return res.stdout.strip(), secret_file.read_text().strip()


@pytest.fixture
def agent_and_provider(pcsc_rig: PcscRig, pki: LoginPki,
                       tmp_path: Path) -> Iterator[tuple[Agent, Provider]]:
    """The agent allows only the provider's origin; the provider's login page calls it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_agent(pcsc_rig, tmp_path / "agent", [url]) as agent:
        home = tmp_path / "idp"
        home.mkdir()
        (home / "root.pem").write_bytes(pem(pki.root.cert.dump()))
        (home / "ca.pem").write_bytes(pem(pki.ca.cert.dump()))
        config = home / "idp.toml"
        config.write_text(f'issuer = "{url}"\nagent_url = "{agent.url}"\n'
                          'trust_anchors = ["root.pem"]\nintermediates = ["ca.pem"]\n'
                          "fetch_revocation = true\n")
        db_url = f"sqlite:///{home / 'idp.sqlite'}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "sscard.cli", "--home", str(home), "idp", "serve",
             "--config", str(config), "--db-url", db_url, "--port", str(port),
             "--workers", "2", "--threads", "2"],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), start_new_session=True,
            stdin=subprocess.DEVNULL)
        try:
            wait_up(url + "/health", proc)
            yield agent, Provider(url, home, db_url)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def pem(der: bytes) -> bytes:
    from asn1crypto import pem as asn1pem

    return asn1pem.armor("CERTIFICATE", der)


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):  # the workers boot; wait for an answer, not for a time
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert proc.poll() is None, "sscard idp serve exited"
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def business_system(provider: Provider) -> Iterator[str]:
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
        if names := d.find_elements(By.ID, "client-name"):
            return str(names[0].text)
        status = d.find_elements(By.ID, "sscard-status")
        text = status[0].text if status else ""
        return f"refused: {text}" if text and text != "正在读卡……" else None

    return str(wait.until(shown))


def test_cardholder_logs_in_to_a_business_system_in_chromium(
        browser: Any, agent_and_provider: tuple[Agent, Provider],  # noqa: F811
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

