"""RP-initiated logout and signing-key rotation at the provider: a relying party built with
Authlib's client, tokens from the emulated card in process."""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from joserfc import jws

from sscard.idp.provider import SigningKeys, new_signing_key
from tests.gateway.card import HOLDER_SSN
from tests.idp.provider_rig import RelyingParty, Rig, add_client, serve
from tests.idp.test_provider import _login, _rp, _tamper


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    path: Path = tmp_path_factory.mktemp("idp-sessions") / "idp.sqlite"
    yield from serve(f"sqlite:///{path}")


def _kid(id_token: str) -> str:
    return str(jws.extract_compact(id_token.encode()).headers()["kid"])


def _logged_in(rig: Rig, browser: requests.Session, rp: RelyingParty) -> bool:
    answer = browser.get(rp.authorize_url(), allow_redirects=False)
    return not (answer.status_code == 302 and "/login?" in answer.headers["Location"])


def test_logout_with_id_token_hint_redirects_to_the_registered_uri(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    id_token = rp.fetch(_login(rig, rp, browser))["id_token"]
    assert _logged_in(rig, browser, rp)
    answer = browser.get(rig.url + "/logout", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": "https://rp.example/bye",
        "state": "s1"}, allow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["Location"] == "https://rp.example/bye?state=s1"
    assert not _logged_in(rig, browser, rp)


def test_logout_to_an_unregistered_uri_does_not_redirect(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    id_token = rp.fetch(_login(rig, rp, browser))["id_token"]
    answer = browser.get(rig.url + "/logout", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": "https://evil.example/"},
        allow_redirects=False)
    assert answer.status_code == 200 and "Location" not in answer.headers
    assert "您已退出登录" in answer.text


def test_logout_without_hint_asks_before_ending_the_session(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    rp.fetch(_login(rig, rp, browser))
    page = browser.get(rig.url + "/logout", params={
        "client_id": rp.client_id, "post_logout_redirect_uri": "https://rp.example/bye"},
        allow_redirects=False)
    assert page.status_code == 200 and "确定要退出" in page.text
    assert _logged_in(rig, browser, rp)  # a link alone logs nobody out
    forged = browser.post(rig.url + "/logout", data={"client_id": rp.client_id},
                          allow_redirects=False)
    assert forged.status_code == 403 and forged.json()["code"] == "csrf"
    assert _logged_in(rig, browser, rp)
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    done = browser.post(rig.url + "/logout", data={
        "csrf": csrf, "client_id": rp.client_id,
        "post_logout_redirect_uri": "https://rp.example/bye"}, allow_redirects=False)
    # without an ID token the provider cannot tell the RP asked: no redirect, but logged out
    assert done.status_code == 200 and "Location" not in done.headers
    assert not _logged_in(rig, browser, rp)


def test_logout_with_a_tampered_hint_is_refused(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    id_token = rp.fetch(_login(rig, rp, browser))["id_token"]
    answer = browser.get(rig.url + "/logout", params={
        "id_token_hint": _tamper(id_token), "post_logout_redirect_uri": "https://rp.example/bye"},
        allow_redirects=False)
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert answer.json()["code"] == "invalid_request"
    assert _logged_in(rig, browser, rp)


def test_key_rotation_mid_session(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    before = rp.fetch(_login(rig, rp, browser))["id_token"]
    first_nonce = rp.nonce
    new_kid = new_signing_key(rig.store)
    # the RP fetches the JWKS again (a new kid): the token it already holds still verifies
    assert rp.verify(before)["sscard:ssn"]
    after = rp.fetch(_login(rig, rp, browser))["id_token"]
    assert _kid(after) == new_kid != _kid(before)
    assert rp.verify(after)["sub"] == rp.verify(before, first_nonce)["sub"]
    # and the old token still ends the session at the provider
    answer = browser.get(rig.url + "/logout", params={
        "id_token_hint": before, "post_logout_redirect_uri": "https://rp.example/bye"},
        allow_redirects=False)
    assert answer.status_code == 302


def test_retired_key_leaves_the_jwks_after_its_retention(rig: Rig) -> None:
    rp = _rp(rig)
    old = _kid(rp.fetch(_login(rig, rp))["id_token"])
    new_signing_key(rig.store)
    later = SigningKeys(rig.store, timedelta(days=1),
                        lambda: datetime.now(UTC) + timedelta(days=1, minutes=1))
    kids = {k["kid"] for k in later.jwks()["keys"]}
    assert old not in kids and later.current().kid in kids
    now = SigningKeys(rig.store, timedelta(days=1), lambda: datetime.now(UTC))
    assert old in {k["kid"] for k in now.jwks()["keys"]}


def test_removed_client_can_no_longer_log_in(rig: Rig) -> None:
    c = add_client(rig)
    rp = RelyingParty(rig.url, c.client_id, c.secret, c.redirect_uri)
    redirect = _login(rig, rp)
    rig.store.remove_client(c.client_id)
    answer = rig.browser().get(rp.authorize_url(), allow_redirects=False)
    assert answer.status_code in (400, 401) and answer.json()["code"] == "invalid_client"
    with pytest.raises(Exception, match="invalid_client"):
        rp.fetch(redirect)


def test_a_cookie_copied_before_logout_is_dead_after_it(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    id_token = rp.fetch(_login(rig, rp, browser))["id_token"]
    thief = rig.browser()
    thief.cookies.update(browser.cookies)  # stolen (malware, a shared computer)
    assert _logged_in(rig, thief, rp)
    browser.get(rig.url + "/logout", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": "https://rp.example/bye"},
        allow_redirects=False)
    assert not _logged_in(rig, thief, rp)


def test_the_cookie_carries_no_personal_data(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    rp.fetch(_login(rig, rp, browser))
    cookie = browser.cookies.get("sscard_idp") or ""
    compressed = cookie.startswith(".")
    payload = cookie.removeprefix(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    text = (zlib.decompress(raw) if compressed else raw).decode()  # itsdangerous' format
    assert "csrf" in text or "sid" in text  # the decoding is right
    assert HOLDER_SSN not in text and "\\u5f20" not in text and "张三" not in text
