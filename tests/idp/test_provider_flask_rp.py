"""A business system built only from Authlib's Flask OpenID Connect client (discovery,
PKCE, the ID token verified by Authlib itself with the provider's JWKS, nonce and at_hash
checked) logs a cardholder in through the provider; after a key rotation a new login is
verified with the new key, fetched by the client on its own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from authlib.integrations.flask_client import OAuth
from flask import Flask, session, url_for

from sscard.idp.provider import new_signing_key
from tests.gateway.card import HOLDER_SSN
from tests.idp.provider_rig import Rig, serve

RP = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    path: Path = tmp_path_factory.mktemp("idp-flask-rp") / "idp.sqlite"
    yield from serve(f"sqlite:///{path}")


def business_system(rig: Rig) -> Flask:
    client, secret = rig.store.add_client("社保业务系统", [RP + "/callback"])
    app = Flask("rp")
    app.secret_key = secrets.token_bytes(32)
    app.config.update(SERVER_NAME="127.0.0.1:8000")
    oauth = OAuth(app)
    oauth.register("sscard", client_id=client.client_id, client_secret=secret,
                   server_metadata_url=rig.url + "/.well-known/openid-configuration",
                   client_kwargs={"scope": "openid profile", "code_challenge_method": "S256"})

    @app.get("/login")
    def login() -> Any:
        return oauth.sscard.authorize_redirect(url_for("callback", _external=True))

    @app.get("/callback")
    def callback() -> Any:
        token = oauth.sscard.authorize_access_token()
        session["user"] = dict(token["userinfo"])
        return "ok"

    return app


def _log_in(rig: Rig, app: Flask) -> dict[str, Any]:
    web = app.test_client()
    start = web.get("/login")
    assert start.status_code == 302 and start.location.startswith(rig.url + "/authorize?")
    assert "code_challenge_method=S256" in start.location
    back = rig.login(rig.browser(), start.location)
    assert back.status_code == 302, back.text
    assert web.get(back.headers["Location"].removeprefix(RP)).text == "ok"
    with web.session_transaction() as s:
        return dict(s["user"])


def test_authlib_flask_client_logs_the_cardholder_in(rig: Rig) -> None:
    app = business_system(rig)
    user = _log_in(rig, app)
    assert user["sscard:ssn"] == HOLDER_SSN and user["name"] == "张三"
    assert user["iss"] == rig.url and user["amr"] == ["hwk", "pin"]


def test_authlib_flask_client_follows_a_key_rotation(rig: Rig) -> None:
    app = business_system(rig)
    first = _log_in(rig, app)
    new_signing_key(rig.store)
    second = _log_in(rig, app)  # signed with a kid the client has not seen
    assert first["sub"] == second["sub"]
