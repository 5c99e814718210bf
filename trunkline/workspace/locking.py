"""Mutual exclusion for one mirror: a thread lock plus an `flock` on a lock file.

Performs I/O (a lock file). The thread lock serializes workers of one process; the `flock`
(taken on a fresh file descriptor per acquisition, so it also excludes other threads and
other processes) serializes processes. The kernel drops an `flock` when its holder dies,
even by SIGKILL, so a crashed holder never blocks the next start. Waiting uses real time:
contention is between real processes.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trunkline.workspace.errors import MirrorBusyError


class MirrorLocks:
    """The locks of every mirror of one workspace, keyed by lock-file path."""

    def __init__(self, timeout_seconds: float = 300.0) -> None:
        self._timeout = timeout_seconds
        self._guard = threading.Lock()
        self._thread_locks: dict[Path, threading.Lock] = {}

    def _thread_lock(self, path: Path) -> threading.Lock:
        with self._guard:
            return self._thread_locks.setdefault(path, threading.Lock())

    @contextmanager
    def hold(self, lock_file: Path) -> Iterator[None]:
        """Hold the lock of `lock_file` (created if missing) for the `with` body."""
        deadline = time.monotonic() + self._timeout
        thread_lock = self._thread_lock(lock_file)
        if not thread_lock.acquire(timeout=self._timeout):
            raise MirrorBusyError(f"mirror lock {lock_file.name} is busy in this process")
        try:
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                _flock_until(fd, deadline, lock_file)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            thread_lock.release()


def _flock_until(fd: int, deadline: float, lock_file: Path) -> None:
    delay = 0.01
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise MirrorBusyError(
                    f"mirror lock {lock_file.name} is held by another process"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
