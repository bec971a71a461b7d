"""``sscard idp client ...`` and ``sscard idp keys ...``: an administrator registers a business
system (its secret only in a 0600 file) and rotates signing keys; the client registered this
way logs a cardholder in through the provider."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sscard.audit import AuditLog
from sscard.cli import cli
from sscard.idp.store import IdpStore
from tests.gateway.card import HOLDER_SSN
from tests.idp.provider_rig import RelyingParty, Rig, serve
from tests.idp.test_provider import _login


def _run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), "idp", *args])


@pytest.fixture()
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield from serve(f"sqlite:///{tmp_path / 'idp.sqlite'}")


def test_client_add_writes_the_secret_only_to_a_private_file(tmp_path: Path, rig: Rig) -> None:
    secret_file = tmp_path / "rp.secret"
    res = _run(tmp_path, "client", "add", "--name", "就业登记系统",
               "--redirect-uri", "https://rp.example/callback",
               "--post-logout-redirect-uri", "https://rp.example/bye",
               "--secret-file", str(secret_file))
    assert res.exit_code == 0, res.output
    client_id = res.stdout.strip()
    secret = secret_file.read_text().strip()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert secret not in res.output and secret not in (res.stderr or "")
    # the business system so registered logs a cardholder in
    rp = RelyingParty(rig.url, client_id, secret, "https://rp.example/callback")
    assert rp.verify(rp.fetch(_login(rig, rp))["id_token"])["sscard:ssn"] == HOLDER_SSN
    listed = json.loads(_run(tmp_path, "client", "list", "--format", "json").stdout)
    assert [c["client_id"] for c in listed] == [client_id]
    assert secret not in json.dumps(listed)
    assert (tmp_path / "idp.sqlite").stat().st_mode & 0o077 == 0
    log = AuditLog.at_home(tmp_path)
    added = [r.record for r in log.records(actions=["idp.client.add"])]
    assert [r.outcome for r in added] == ["attempt", "success"]
    assert added[1].details["client_id"] == client_id
    assert secret not in json.dumps([dict(r.details) for r in added])


@pytest.mark.parametrize("uri, message", [
    ("http://rp.example/callback", "https is required"),
    ("https://rp.example/cb#frag", "without a fragment"),
    ("rp.example/callback", "absolute https URL"),
])
def test_client_add_refuses_bad_redirect_uris_and_creates_nothing(
        tmp_path: Path, rig: Rig, uri: str, message: str) -> None:
    secret_file = tmp_path / "rp.secret"
    res = _run(tmp_path, "client", "add", "--name", "x", "--redirect-uri", uri,
               "--secret-file", str(secret_file))
    assert res.exit_code == 2 and message in res.output
    assert not secret_file.exists()
    assert json.loads(_run(tmp_path, "client", "list", "--format", "json").stdout) == []


def test_client_add_never_overwrites_a_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "rp.secret"
    secret_file.write_text("keep me")
    res = _run(tmp_path, "client", "add", "--name", "x", "--redirect-uri",
               "https://rp.example/cb", "--secret-file", str(secret_file))
    assert res.exit_code == 2 and "never overwritten" in res.output
    assert secret_file.read_text() == "keep me"
    assert json.loads(_run(tmp_path, "client", "list", "--format", "json").stdout) == []


def test_client_list_shows_each_clients_granted_scopes(tmp_path: Path) -> None:
    ids = {}
    for name, grants in (("plain", []), ("ra", ["--grant-scope", "sscard:cert"])):
        res = _run(tmp_path, "client", "add", "--name", name, "--redirect-uri",
                   f"https://{name}.example/cb", "--secret-file", str(tmp_path / name), *grants)
        assert res.exit_code == 0, res.output
        ids[name] = res.stdout.strip()
    lines = {line.split()[0]: line for line in _run(tmp_path, "client", "list").stdout.splitlines()}
    assert sorted(lines) == sorted(ids.values())
    assert lines[ids["plain"]] == (f"{ids['plain']}  plain  sector=plain.example  "
                                   "granted_scopes=none  https://plain.example/cb")
    assert "  granted_scopes=sscard:cert  https://ra.example/cb" in lines[ids["ra"]]
    listed = json.loads(_run(tmp_path, "client", "list", "--format", "json").stdout)
    assert {c["client_id"]: c["granted_scopes"] for c in listed} == {
        ids["plain"]: [], ids["ra"]: ["sscard:cert"]}  # the text says what the JSON says


def test_client_remove_of_an_unknown_client_says_so(tmp_path: Path) -> None:
    res = _run(tmp_path, "client", "remove", "nobody")
    assert res.exit_code == 1 and "no client 'nobody'" in res.output


def test_keys_rotate_keeps_the_old_key_published(tmp_path: Path) -> None:
    first = _run(tmp_path, "keys", "rotate")
    second = _run(tmp_path, "keys", "rotate")
    assert first.exit_code == second.exit_code == 0
    kid1, kid2 = first.stdout.strip(), second.stdout.strip()
    listing = _run(tmp_path, "keys", "list").stdout
    assert f"{kid2}  ES256" in listing and listing.splitlines()[0].endswith("current")
    assert kid1 in listing and '"d"' not in listing
    store = IdpStore(f"sqlite:///{tmp_path / 'idp.sqlite'}")
    assert [k["kid"] for k in store.keys()] == [kid2, kid1]
    # --retention-hours 0 drops every retired key
    third = _run(tmp_path, "keys", "rotate", "--retention-hours", "0")
    assert third.exit_code == 0 and "dropped 2" in third.stderr
    assert [k["kid"] for k in store.keys()] == [third.stdout.strip()]
    rotations = [r.record for r in AuditLog.at_home(tmp_path).records(
        actions=["idp.key.rotate"], outcome="success")]
    assert [r.details["kid"] for r in rotations] == [kid1, kid2, third.stdout.strip()]


@pytest.mark.parametrize("text, message", [
    ('agent_url = "http://127.0.0.1:1"\ntrust_anchors = ["root.pem"]\n', "'issuer'"),
    ('issuer = "https://idp.example"\ntrust_anchors = ["root.pem"]\ncolour = 1\n',
     "unknown settings colour"),
    ('issuer = "https://idp.example"\ntrust_anchors = ["missing.pem"]\n', "missing.pem"),
    ('issuer = "https://idp.example/"\ntrust_anchors = ["root.pem"]\n', "trailing slash"),
    ('issuer = "https://idp.example"\n', "trust anchor"),
    ('issuer = "https://idp.example"\ntrust_anchors = [\n', "idp.toml"),
])
def test_serve_names_what_is_wrong_in_the_configuration(
        tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "root.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "idp.toml").write_text(text)
    res = _run(tmp_path, "serve", "--config", str(tmp_path / "idp.toml"), "--port", "1")
    assert res.exit_code == 1 and message in res.output, res.output
