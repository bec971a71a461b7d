"""One-time login nonces without an fsync per consumption (NonceStore on SQLite: WAL with
synchronous=NORMAL, bound to the machine's boot id). One-time use must hold across worker
processes, across restarts of the provider, and across a power failure (a new boot id): each is
a test here, attacks first."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
from pathlib import Path

import pytest

from sscard.idp.authtoken import NonceStore, TokenError, TokenValidator, boot_id
from tests.idp.login_pki import LoginPki, make_login_pki, make_token

ORIGIN = "https://rp.example:8443"


@pytest.fixture(scope="module")
def pki() -> LoginPki:
    return make_login_pki()


def consume_code(store: NonceStore, nonce: str) -> str:
    try:
        store.consume(nonce)
    except TokenError as exc:
        return exc.code
    return "ok"


def _worker(url: str, nonce: str, barrier: multiprocessing.synchronize.Barrier,
            results: multiprocessing.queues.Queue[str]) -> None:
    store = NonceStore(url)  # its own engine and connections, as a gunicorn worker has
    with store.engine.connect():
        pass  # connected before the race starts, so the race is the consumption itself
    barrier.wait(timeout=60)
    results.put(consume_code(store, nonce))


def race(url: str, nonce: str, workers: int) -> list[str]:
    context = multiprocessing.get_context("spawn")  # no engine inherited through fork
    barrier = context.Barrier(workers)
    results: multiprocessing.queues.Queue[str] = context.Queue()
    processes = [context.Process(target=_worker, args=(url, nonce, barrier, results))
                 for _ in range(workers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return sorted(outcomes)


@pytest.mark.parametrize("workers", [2, 6])
def test_worker_processes_racing_one_nonce_one_wins(tmp_path: Path, workers: int) -> None:
    url = f"sqlite:///{tmp_path / 'nonces.db'}"
    nonce = NonceStore(url).issue()
    assert race(url, nonce, workers) == ["NONCE_USED"] * (workers - 1) + ["ok"]


def test_a_restarted_provider_still_refuses_a_used_nonce(tmp_path: Path, pki: LoginPki) -> None:
    """A restart of the provider (same boot): the consumption is in the WAL, not lost."""
    url = f"sqlite:///{tmp_path / 'nonces.db'}"
    first = NonceStore(url, boot=lambda: "boot-1")
    nonce = first.issue()
    token = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    TokenValidator(pki.trust(), nonces=first).validate(token, ORIGIN, nonce)
    first.engine.dispose()
    again = NonceStore(url, boot=lambda: "boot-1")
    with pytest.raises(TokenError) as exc:
        TokenValidator(pki.trust(), nonces=again).validate(token, ORIGIN, nonce)
    assert exc.value.code == "NONCE_USED"


def test_nonces_from_before_a_power_failure_are_never_accepted(tmp_path: Path) -> None:
    """A power failure may lose the last consumptions (synchronous=NORMAL): the store, started
    under a new boot id, takes every earlier nonce for used, consumed or not."""
    url = f"sqlite:///{tmp_path / 'nonces.db'}"
    before = NonceStore(url, boot=lambda: "boot-1")
    unused = before.issue()
    before.engine.dispose()
    after = NonceStore(url, boot=lambda: "boot-2")
    assert consume_code(after, unused) == "NONCE_USED"
    fresh = after.issue()
    # a second worker starting in the same boot does not forget the new boot's nonces
    assert consume_code(NonceStore(url, boot=lambda: "boot-2"), fresh) == "ok"
    assert consume_code(after, fresh) == "NONCE_USED"


def synchronous(store: NonceStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())


def test_without_a_boot_id_every_consumption_is_durable(tmp_path: Path) -> None:
    """No boot id (not Linux): nothing would tell a power failure, so commits stay FULL (2)."""
    url = f"sqlite:///{tmp_path / 'nonces.db'}"
    assert synchronous(NonceStore(url, boot=lambda: None)) == 2
    assert synchronous(NonceStore(url, boot=lambda: "boot-1")) == 1  # NORMAL


def test_boot_id_is_the_kernels(tmp_path: Path) -> None:
    assert boot_id() == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert boot_id(tmp_path / "absent") is None
