"""The provider's database under concurrency, on SQLite and PostgreSQL: a code raced by
several token requests is redeemed once; the provider's secrets are made once however many
workers start together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sscard.idp.store import AuthorizationCode, IdpStore, StoreError
from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'idp.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


def _together(n: int, work: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_raced_code_is_redeemed_once(url: str) -> None:
    store = IdpStore(url)
    client, _ = store.add_client("rp", ["https://rp.example/cb"])
    store.save_code(AuthorizationCode(
        "the-code", client.client_id, "https://rp.example/cb", "openid", "n", "c" * 43, "S256",
        0, {"ssn": "x"}, datetime.now(UTC) + timedelta(seconds=60)))
    stores = iter([IdpStore(url) for _ in range(6)])  # as separate workers would
    lock = threading.Lock()

    def take() -> Any:
        with lock:
            mine = next(stores)
        return mine.take_code("the-code", client.client_id)

    results = _together(6, take)
    assert sum(r is not None for r in results) == 1
    assert store.take_code("the-code", client.client_id) is None


def test_provider_secrets_are_made_once(url: str) -> None:
    stores = iter([IdpStore(url) for _ in range(6)])
    made = iter(range(100))
    lock = threading.Lock()

    def make() -> str:
        with lock:
            return f"value-{next(made)}"

    def get() -> str:
        with lock:
            mine = next(stores)
        return mine.setting("pairwise_secret", make)

    results = _together(6, get)
    assert len(set(results)) == 1 and results[0].startswith("value-")  # the PG database
    # is shared by this module's tests: the value may come from the first parametrisation


def test_a_code_of_another_client_is_not_taken_nor_burnt(url: str) -> None:
    store = IdpStore(url)
    one, _ = store.add_client("one", ["https://one.example/cb"])
    two, _ = store.add_client("two", ["https://two.example/cb"])
    store.save_code(AuthorizationCode(
        "code-1", one.client_id, "https://one.example/cb", "openid", None, "c" * 43, "S256", 0,
        {}, datetime.now(UTC) + timedelta(seconds=60)))
    assert store.take_code("code-1", two.client_id) is None
    assert store.take_code("code-1", one.client_id) is not None


def test_remove_of_an_unknown_client_changes_nothing(url: str) -> None:
    store = IdpStore(url)
    store.add_client("one", ["https://one.example/cb"])
    before = store.clients()
    with pytest.raises(StoreError, match="no client"):
        store.remove_client("nobody")
    assert store.clients() == before


def test_codes_expired_over_a_day_ago_are_purged(url: str) -> None:
    store = IdpStore(url)
    client, _ = store.add_client("rp", ["https://rp.example/cb"])
    old = datetime.now(UTC) - timedelta(days=1, minutes=1)
    store.save_code(AuthorizationCode(
        "old-code", client.client_id, "https://rp.example/cb", "openid", "old-nonce", None,
        None, 0, {"ssn": "x"}, old))
    assert store.nonce_used(client.client_id, "old-nonce")
    store.save_code(AuthorizationCode(
        "new-code", client.client_id, "https://rp.example/cb", "openid", "new-nonce", None,
        None, 0, {"ssn": "x"}, datetime.now(UTC) + timedelta(seconds=60)))
    assert not store.nonce_used(client.client_id, "old-nonce")
    assert store.nonce_used(client.client_id, "new-nonce")
