"""Running the validator's coroutine from synchronous code, on one event loop per thread.

pyhanko-certvalidator is written as coroutines because it may fetch CRLs and OCSP answers; a
validation that fetches nothing never waits for anything, yet asyncio.run (a new loop, a task,
a round of the selector) costs a tenth of a warm validation. So:

- a coroutine that may wait (fetching configured) runs on the thread's kept loop;
- one that should not is driven directly (``send(None)`` until it returns), with the thread's
  loop set as the running loop meanwhile so that asyncio calls inside find one; should it wait
  for something after all, the rest of it is handed to that loop, in the same context, so it
  still finishes correctly (only slower).

Tasks a coroutine leaves behind are cancelled before the call returns, as asyncio.run does,
so none runs into the next call.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

_ResultT = TypeVar("_ResultT")


class _OwnedLoop:
    """A thread's event loop, closed with the thread's locals (an unclosed loop warns).
    Closing only releases its selector: nothing runs, nothing is waited for, as this may
    happen inside the garbage collector."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # every task made on the loop since the last call ended: asyncio.all_tasks walks the
        # tasks of every loop of the process, on each call
        tasks: list[asyncio.Task[Any]] = []

        def task_factory(
            loop: asyncio.AbstractEventLoop, coro: Any, **options: Any
        ) -> asyncio.Task[Any]:
            task = asyncio.Task(coro, loop=loop, **options)
            tasks.append(task)
            return task

        self.tasks = tasks
        self.loop.set_task_factory(task_factory)

    def __del__(self) -> None:
        if not self.loop.is_running():
            self.loop.close()


class _ThreadLoop(threading.local):
    owned: _OwnedLoop | None = None


_LOOPS = _ThreadLoop()


def _thread_loop() -> _OwnedLoop:
    if _LOOPS.owned is None:
        _LOOPS.owned = _OwnedLoop()
    return _LOOPS.owned


class _Rest:
    """The rest of a coroutine that was started outside the loop and is waiting for
    ``pending`` (what it yielded): awaiting this passes each yield to the task that runs it
    and each answer back, as ``yield from`` would for a coroutine not yet started."""

    def __init__(self, coroutine: Coroutine[Any, Any, _ResultT], pending: object) -> None:
        self._coroutine = coroutine
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        pending = self._pending
        while True:
            try:
                answer = yield pending
            except BaseException as exc:  # a cancellation: passed on in
                step: Any = self._coroutine.throw
                given: Any = exc
            else:
                step, given = self._coroutine.send, answer
            try:
                pending = step(given)
            except StopIteration as done:
                return done.value


async def _finish(rest: _Rest) -> Any:
    return await rest


def _on_loop(
    owned: _OwnedLoop,
    coroutine: Coroutine[Any, Any, _ResultT],
    context: contextvars.Context | None = None,
) -> _ResultT:
    try:
        return owned.loop.run_until_complete(owned.loop.create_task(coroutine, context=context))
    finally:
        _cancel_left_tasks(owned)


def _cancel_left_tasks(owned: _OwnedLoop) -> None:
    left = [task for task in owned.tasks if not task.done()]
    owned.tasks.clear()  # (they hold the loop, which holds the factory that holds them)
    if left:
        for task in left:
            task.cancel()
        owned.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))


def run(coroutine: Coroutine[Any, Any, _ResultT], *, may_wait: bool) -> _ResultT:
    """``coroutine``'s result (or exception), as asyncio.run would give it; ``may_wait``
    False drives it without a round of the event loop while it waits for nothing."""
    if asyncio._get_running_loop() is not None:
        coroutine.close()
        raise RuntimeError(
            "validate_path cannot be called from a running event loop: "
            "await validate_path_async there"
        )
    owned = _thread_loop()
    if may_wait:
        return _on_loop(owned, coroutine)
    # a context of its own, as a task would have: the rest, should there be one, runs in it
    context = contextvars.copy_context()
    asyncio.events._set_running_loop(owned.loop)
    try:
        pending = context.run(coroutine.send, None)
    except StopIteration as done:
        finished: _ResultT = done.value
    except BaseException:
        asyncio.events._set_running_loop(None)
        _cancel_left_tasks(owned)
        raise
    else:
        # it waits for something after all: the rest runs on the loop
        asyncio.events._set_running_loop(None)
        return _on_loop(owned, _finish(_Rest(coroutine, pending)), context)
    asyncio.events._set_running_loop(None)
    _cancel_left_tasks(owned)
    return finished
