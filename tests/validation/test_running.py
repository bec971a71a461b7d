"""sscard.validation.running: a coroutine driven without the event loop gives what asyncio.run
would, also when it turns out to wait for something after all."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

import pytest

from sscard.validation.running import run

_VAR: ContextVar[str] = ContextVar("test_running_var", default="outside")


async def _no_wait() -> str:
    token = _VAR.set("inside")
    try:
        return _VAR.get()
    finally:
        _VAR.reset(token)


async def _waits(seconds: float) -> tuple[str, str]:
    token = _VAR.set("inside")
    try:
        await asyncio.sleep(0)  # a bare yield
        loop = asyncio.get_running_loop()
        await asyncio.sleep(seconds)  # a timer on the loop
        future = loop.create_future()
        loop.call_soon(future.set_result, "answered")
        answer = await future
        return _VAR.get(), answer
    finally:
        _VAR.reset(token)  # a token from the same context: the rest ran in it


async def _fails_after_waiting() -> None:
    await asyncio.sleep(0.001)
    raise LookupError("after the wait")


async def _leaves_a_task() -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(asyncio.sleep(60))


@pytest.mark.parametrize("may_wait", [False, True])
def test_result_and_context_as_asyncio_run(may_wait: bool) -> None:
    assert run(_no_wait(), may_wait=may_wait) == "inside"
    assert _VAR.get() == "outside"


@pytest.mark.parametrize("may_wait", [False, True])
def test_a_coroutine_that_waits_after_all_still_finishes(may_wait: bool) -> None:
    assert run(_waits(0.001), may_wait=may_wait) == ("inside", "answered")
    assert _VAR.get() == "outside"
    assert asyncio._get_running_loop() is None


@pytest.mark.parametrize("may_wait", [False, True])
def test_exceptions_come_through(may_wait: bool) -> None:
    with pytest.raises(LookupError, match="after the wait"):
        run(_fails_after_waiting(), may_wait=may_wait)
    assert asyncio._get_running_loop() is None


@pytest.mark.parametrize("may_wait", [False, True])
def test_tasks_left_behind_are_cancelled(may_wait: bool) -> None:
    task = run(_leaves_a_task(), may_wait=may_wait)
    assert task.cancelled()


def test_refused_inside_a_running_loop() -> None:
    async def caller() -> None:
        coroutine = _no_wait()
        with pytest.raises(RuntimeError, match="running event loop"):
            run(coroutine, may_wait=False)

    asyncio.run(caller())
