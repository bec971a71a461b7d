"""A daemon thread that calls a function every so many seconds until stopped: the served
services' timers (signed audit checkpoints, the RA carrying on requests that waited for the CA
or the KMC). A failing call is logged and the next one comes on time: the timer never dies of
one bad round."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("sscard.periodic")


class Periodic(threading.Thread):
    """Calls ``task()`` every ``interval`` seconds until :meth:`stop`; ``errors`` are logged as
    warnings under ``what`` (anything else is a bug and ends the thread with a traceback)."""

    def __init__(self, task: Callable[[], object], interval: float, *, name: str, what: str,
                 errors: tuple[type[BaseException], ...] = (Exception,),
                 log: logging.Logger = logger) -> None:
        if interval <= 0:
            raise ValueError(f"{what}: the interval must be positive (got {interval})")
        super().__init__(name=name, daemon=True)
        self.task, self.interval, self.what, self.errors = task, interval, what, errors
        self._log = log
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.task()
            except self.errors as exc:
                self._log.warning("%s failed: %s", self.what, exc)

    def stop(self) -> None:
        self._stopped.set()
