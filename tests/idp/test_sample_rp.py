"""The sample business system `make serve` runs (sscard.idp.sample_rp): Authlib's Flask client
logs the cardholder in through the provider and the page shows the holder's name, social
security number and card number (or says the card number was not given); logout goes to the
provider's end_session endpoint; a callback with someone else's state logs nobody in; a bad
configuration is named."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from sscard.cli import cli
from sscard.idp.sample_rp import SampleConfig, SampleConfigError, create_app
from tests.gateway.card import HOLDER_SSN
from tests.idp.provider_rig import Rig, serve

RP = "http://127.0.0.1:8450"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    path: Path = tmp_path_factory.mktemp("idp-sample-rp") / "idp.sqlite"
    yield from serve(f"sqlite:///{path}")


@pytest.fixture
def sample(rig: Rig) -> Any:
    client, secret = rig.store.add_client("社保业务系统（示例）", [RP + "/callback"], [RP + "/"])
    config = SampleConfig(rig.url, RP, client.client_id, secret, secrets.token_bytes(32))
    return create_app(config).test_client()


def log_in(rig: Rig, web: Any) -> Any:
    start = web.get("/login", base_url=RP)
    assert start.status_code == 302 and start.location.startswith(rig.url + "/authorize?")
    back = rig.login(rig.browser(), start.location)
    assert back.status_code == 302, back.text
    return web.get(back.headers["Location"].removeprefix(RP), base_url=RP)


def test_a_forged_callback_logs_nobody_in(rig: Rig, sample: Any) -> None:
    """A code and state from another browser's login (login CSRF) is refused by the client."""
    other = create_app(SampleConfig(rig.url, RP, "x", "y", b"k" * 32)).test_client()
    start = sample.get("/login", base_url=RP)
    back = rig.login(rig.browser(), start.location)
    answer = other.get(back.headers["Location"].removeprefix(RP), base_url=RP)
    assert answer.status_code == 400 and 'id="refused"' in answer.text
    assert "社会保障号码" not in other.get("/", base_url=RP).text


def test_the_page_shows_the_holder_after_a_card_login(rig: Rig, sample: Any) -> None:
    before = sample.get("/", base_url=RP).text
    assert 'id="login"' in before and HOLDER_SSN not in before
    assert log_in(rig, sample).location == "/"
    page = sample.get("/", base_url=RP).text
    assert '<dd id="name">张三</dd>' in page
    assert f'<dd id="ssn">{HOLDER_SSN}</dd>' in page
    # the in-process provider of this rig verifies no card number: the page says so, no guess
    assert "未能核实卡号" in page


def test_logout_ends_the_session_at_the_provider(rig: Rig, sample: Any) -> None:
    log_in(rig, sample)
    out = sample.post("/logout", base_url=RP)
    target = urlsplit(out.location)
    assert f"{target.scheme}://{target.netloc}{target.path}" == rig.url + "/logout"
    query = parse_qs(target.query)
    assert query["post_logout_redirect_uri"] == [RP + "/"] and query["id_token_hint"]
    assert 'id="login"' in sample.get("/", base_url=RP).text


@pytest.mark.parametrize(("text", "message"), [
    ('issuer = "http://127.0.0.1:1"\n', "needs exactly"),
    ('issuer = "idp"\nurl = "http://127.0.0.1:2"\nclient_id_file = "id"\n'
     'client_secret_file = "s"\nsession_key_file = "k"\n', "issuer must be"),
    ('issuer = "http://127.0.0.1:1"\nurl = "http://127.0.0.1:2"\nclient_id_file = "none"\n'
     'client_secret_file = "s"\nsession_key_file = "k"\n', "client_id_file"),
])
def test_a_bad_configuration_is_named(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "sample-rp.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(SampleConfigError, match=message):
        SampleConfig.load(config)
    res = CliRunner().invoke(cli, ["idp", "sample-rp", "--config", str(config)])
    assert res.exit_code != 0 and message in res.output
