"""An exclusive lock across processes on a path: ``flock`` on a lock file (created 0600 when
missing) or on a directory. The lock is released when the descriptor closes, also when its
holder dies, so a crashed process never leaves it held."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(path: str | Path, *, directory: bool = False) -> Iterator[None]:
    """Hold the lock on ``path`` for the ``with`` block. ``directory``: lock the directory
    itself, which leaves nothing behind in it."""
    fd = os.open(path, os.O_RDONLY if directory else os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
