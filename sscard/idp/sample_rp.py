"""A sample business system that logs cardholders in through the provider: what `make serve`
runs beside ``sscard idp serve`` so that a person can try a card login end to end.

It is built only from a standard OpenID Connect client (Authlib's Flask client: discovery,
the authorisation code flow with PKCE S256, the ID token verified with the provider's JWKS,
``iss``, ``aud``, ``exp`` and ``nonce`` checked by Authlib), as any business system would be,
and registered at the provider by its administrator (``sscard idp client add``). After the
login its page shows the holder's name, social security number and card number from the ID
token; logout is RP-initiated at the provider.

``sscard idp sample-rp --config sample-rp.toml`` serves it under gunicorn. The configuration
(paths relative to the file)::

    issuer = "http://127.0.0.1:8446"           # the provider
    url = "http://127.0.0.1:8450"              # where this page is; /callback is registered
    client_id_file = "client.id"               # what `sscard idp client add` printed
    client_secret_file = "secrets/client.secret"
    session_key_file = "secrets/session.key"   # shared by the workers (the login's state)

The login's state and the holder's claims are kept in Flask's signed cookie (HttpOnly,
SameSite=Lax): the holder's own data in the holder's own browser, enough for a sample; a
business system with more to protect keeps its sessions server-side.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import click

from sscard.serving import ServeOptions, run, serve_options

CLAIMS = ("sub", "name", "sscard:ssn", "sscard:card_number")


class SampleConfigError(ValueError):
    """The configuration names something missing or wrong."""


@dataclass(frozen=True)
class SampleConfig:
    issuer: str
    url: str
    client_id: str
    client_secret: str = ""
    session_key: bytes = b""

    @property
    def redirect_uri(self) -> str:
        return self.url + "/callback"

    @classmethod
    def load(cls, path: Path) -> SampleConfig:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SampleConfigError(f"{path}: {exc}") from None
        expected = {"issuer", "url", "client_id_file", "client_secret_file", "session_key_file"}
        if set(data) != expected:
            raise SampleConfigError(f"{path}: needs exactly {', '.join(sorted(expected))}")
        for name in ("issuer", "url"):
            parts = urlsplit(str(data[name]))
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise SampleConfigError(f"{path}: {name} must be scheme://host[:port]")

        def read(name: str) -> str:
            try:
                return (path.parent / str(data[name])).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SampleConfigError(f"{path}: {name}: {exc}") from None

        return cls(str(data["issuer"]), str(data["url"]), read("client_id_file"),
                   read("client_secret_file"), read("session_key_file").encode())


PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>社保业务系统（示例）</title></head>
<body>
<h1>社保业务系统（示例）</h1>
{% if user %}
<p>已用社会保障卡登录。</p>
<dl id="holder">
  <dt>姓名</dt><dd id="name">{{ user["name"] }}</dd>
  <dt>社会保障号码</dt><dd id="ssn">{{ user["sscard:ssn"] }}</dd>
  <dt>社会保障卡卡号</dt>
  <dd id="card-number">{{ user.get("sscard:card_number")
                          or "（身份提供者未能核实卡号，未提供）" }}</dd>
</dl>
<form method="post" action="/logout"><button type="submit">退出</button></form>
{% else %}
<p><a id="login" href="/login">用社会保障卡登录</a></p>
{% endif %}
</body></html>
"""

REFUSED = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>登录未完成</title></head>
<body><h1>登录未完成</h1><p id="refused">{{ why }}</p><p><a href="/login">重新登录</a></p>
</body></html>
"""


def create_app(config: SampleConfig) -> Any:
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.flask_client import OAuth
    from flask import Flask, redirect, render_template_string, session
    from joserfc.errors import JoseError

    from sscard import httpops

    app = Flask("sscard-sample-rp")
    app.config.update(SECRET_KEY=config.session_key, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=config.url.startswith("https:"),
                      SESSION_COOKIE_NAME="sample_rp")
    oauth = OAuth(app)
    oauth.register("sscard", client_id=config.client_id, client_secret=config.client_secret,
                   server_metadata_url=config.issuer + "/.well-known/openid-configuration",
                   client_kwargs={"scope": "openid profile", "code_challenge_method": "S256"})
    httpops.install(app, "sample-rp")

    @app.get("/")
    def index() -> Any:
        return render_template_string(PAGE, user=session.get("user"))

    @app.get("/login")
    def login() -> Any:
        return oauth.sscard.authorize_redirect(config.redirect_uri)

    @app.get("/callback")
    def callback() -> Any:
        try:
            # Authlib checks the state, then the ID token's signature, iss, aud, exp, nonce
            token = oauth.sscard.authorize_access_token()
        except (OAuthError, JoseError) as exc:
            session.clear()  # nothing of a failed login stays
            return render_template_string(REFUSED, why=str(exc)), 400
        claims = token["userinfo"]
        session.clear()
        session["user"] = {k: claims[k] for k in CLAIMS if k in claims}
        session["id_token"] = token["id_token"]
        return redirect("/")

    @app.post("/logout")
    def logout() -> Any:
        id_token = session.get("id_token")
        session.clear()
        if not id_token:
            return redirect("/")
        end = oauth.sscard.load_server_metadata()["end_session_endpoint"]
        return redirect(end + "?" + urlencode({"id_token_hint": id_token,
                                               "post_logout_redirect_uri": config.url + "/"}))

    return app


class SampleAppFactory:
    """Builds the app in each gunicorn worker, from the configuration read there."""

    def __init__(self, config_file: Path) -> None:
        self.config_file = config_file

    def __call__(self) -> Any:
        return create_app(SampleConfig.load(self.config_file))


@click.command("sample-rp")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="The sample business system's TOML file (see "
                                  "sscard.idp.sample_rp).")
@serve_options(default_port=8450)
def command(config_file: Path, serving: ServeOptions) -> None:
    """Serve a sample business system that logs in through the provider (under gunicorn)."""
    try:
        SampleConfig.load(config_file)  # a bad file is named before serving
    except SampleConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"sample business system serving on {serving.url}", err=True)
    run(SampleAppFactory(config_file), serving, name="sample-rp")
