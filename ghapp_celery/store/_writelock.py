"""One writer at a time on a SQLite store, queued on locks that wake the next writer at once.

SQLite allows one write transaction at a time. Left to itself, a writer that finds the
database locked sleeps and polls (1, 2, 5 ... 100 ms), so under load from the web process
and several worker threads and processes most of the time goes to sleeping while the lock is
free (measured: the webhook path fell from ~290 to ~190 deliveries/s with 40 threads). Here
threads queue on a lock and processes on ``flock`` of a file next to the database: the kernel
hands the lock to the next waiter as soon as it is released.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SQLiteWriteLock"]


class SQLiteWriteLock:
    """Held around each write transaction of one SQLite database file."""

    _by_database: dict[str | None, SQLiteWriteLock] = {}
    _registry_lock = threading.Lock()

    @classmethod
    def for_database(cls, database: str | None) -> SQLiteWriteLock:
        """The process's one lock for this file: stores sharing a file share it, so a thread
        never waits on a second descriptor of a lock it already holds."""
        with cls._registry_lock:
            lock = cls._by_database.get(database)
            if lock is None:
                lock = cls._by_database[database] = cls(database)
            return lock

    def __init__(self, database: str | None) -> None:
        in_memory = not database or database == ":memory:" or database.startswith("file::memory")
        self._path = None if in_memory else Path(f"{database}.writelock")
        self._thread_lock = threading.RLock()
        self._fd: int | None = None
        self._pid = os.getpid()
        self._depth = 0

    def _descriptor(self) -> int | None:
        if self._path is None:
            return None
        if self._fd is None or self._pid != os.getpid():
            # After fork the parent's descriptor shares its lock state: open our own.
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._pid != os.getpid():
            self._thread_lock = threading.RLock()  # a lock held at fork time stays held
            self._depth = 0
        with self._thread_lock:
            fd = self._descriptor() if self._depth == 0 else None
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
