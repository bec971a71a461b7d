"""The challenge stores: one answer per challenge, for its own system, before it expires; the
SQL store shares that rule between worker processes through the database."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sscard.gateway.challenges import (
    ChallengeStore,
    MemoryChallengeStore,
    SqlChallengeStore,
    new_challenge,
)
from sscard.gateway.errors import GatewayError


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ChallengeStore:
    if request.param == "memory":
        return MemoryChallengeStore()
    return SqlChallengeStore(f"sqlite:///{tmp_path / 'challenges.db'}")


def code_of(store: ChallengeStore, cid: str, system: str, now: datetime | None = None) -> str:
    with pytest.raises(GatewayError) as exc:
        store.take(cid, system, now)
    return exc.value.code


def test_one_answer_per_challenge(store: ChallengeStore) -> None:
    challenge = new_challenge("employment", 60)
    store.put(challenge)
    taken = store.take(challenge.challenge_id, "employment")
    assert taken.to_sign == challenge.to_sign
    assert code_of(store, challenge.challenge_id, "employment") == "CHALLENGE_REPLAYED"


def test_expired_unknown_and_foreign(store: ChallengeStore) -> None:
    old = new_challenge("employment", 60, now=datetime.now(UTC) - timedelta(minutes=2))
    store.put(old)
    assert code_of(store, old.challenge_id, "employment") == "CHALLENGE_EXPIRED"
    assert code_of(store, "f" * 32, "employment") == "CHALLENGE_UNKNOWN"
    other = new_challenge("fund", 60)
    store.put(other)
    assert code_of(store, other.challenge_id, "employment") == "CHALLENGE_WRONG_SYSTEM"


def test_challenge_text_binds_system_and_expiry() -> None:
    a, b = new_challenge("employment", 60), new_challenge("employment", 60)
    assert a.challenge_id != b.challenge_id and a.to_sign != b.to_sign
    text = a.to_sign.decode()
    assert "system=employment" in text and f"challenge={a.challenge_id}" in text
    assert a.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") in text


def _take(url: str, cid: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        SqlChallengeStore(url).take(cid, "employment")
        out.put("ok")
    except GatewayError as exc:
        out.put(exc.code)


def test_sql_store_gives_a_challenge_to_one_process_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    challenge = new_challenge("employment", 60)
    SqlChallengeStore(url).put(challenge)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_take, args=(url, challenge.challenge_id, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert results == ["CHALLENGE_REPLAYED"] * 3 + ["ok"]
