"""The provider under gunicorn with two workers sharing one database: the same keys and
session key in every worker, and a key rotated by the CLI reaches every worker at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from sscard.idp.provider import new_signing_key
from sscard.idp.store import IdpStore
from tests.idp.idp_serve import idp_serve
from tests.idp.login_pki import make_login_pki
from tests.pg import free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    pki = make_login_pki()
    with idp_serve(tmp_path_factory.mktemp("idp-gunicorn"), free_port(), pki.root.cert,
                   pki.ca.cert, fetch_revocation=False) as provider:
        yield provider.url, provider.db_url


def test_every_worker_publishes_the_same_keys_and_a_rotation_at_once(
        served: tuple[str, str]) -> None:
    url, db_url = served
    seen = {tuple(sorted(k["kid"] for k in requests.get(url + "/jwks.json").json()["keys"]))
            for _ in range(20)}
    assert len(seen) == 1
    kid = new_signing_key(IdpStore(db_url))
    for _ in range(20):  # whichever worker answers
        assert kid in {k["kid"] for k in requests.get(url + "/jwks.json").json()["keys"]}


def test_the_session_of_one_worker_is_read_by_the_others(served: tuple[str, str]) -> None:
    url, _ = served
    for _ in range(10):
        browser = requests.Session()
        browser.post(url + "/login/nonce")
        # a session the answering worker could not read would say NONCE_UNKNOWN
        answer = browser.post(url + "/login/token", data=b"junk",
                              headers={"Content-Type": "application/json"})
        assert answer.json()["code"] == "MALFORMED"
