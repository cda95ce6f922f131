"""Group commit for SQLite: writes that queue up behind a transaction share the next one.

SQLite runs one write transaction at a time, so under load the web process's intake threads
and a worker's threads queue on the write lock, each to pay for its own BEGIN and COMMIT
(the commit alone was about a third of a claim's CPU). Here a thread that finds another one
writing leaves its write in a list; the writing thread then runs every write in that list in
one transaction and hands each thread its result (flat combining). Alone, a write is one
transaction as before: there is no timer, so no latency is added to wait for company.

A write that raises is not allowed to fail the others: the batch is rolled back and each of its
writes is run again in a transaction of its own, so each thread sees only its own outcome
(unless the database itself failed: then every write of the batch gets that error at once).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

__all__ = ["WriteCombiner"]

T = TypeVar("T")

#: Writes committed together at most; bounds how long the last thread of a batch waits.
MAX_BATCH = 64


class _Write(Generic[T]):
    __slots__ = ("_wake", "apply", "done", "error", "result")

    def __init__(self, apply: Callable[[Connection], T]) -> None:
        self.apply = apply
        self.result: T | None = None
        self.error: Exception | None = None
        self.done = False
        # A lock taken at birth is the cheapest one-shot wake-up: release() once, by whoever
        # finished this write or hands its thread the lead.
        self._wake = threading.Lock()
        self._wake.acquire()

    def wait(self) -> None:
        self._wake.acquire()

    def wake(self) -> None:
        self._wake.release()


class WriteCombiner:
    """Runs ``apply(conn)`` callables in shared write transactions from ``transaction()``.

    One thread at a time leads: it commits what is queued, batch after batch, until its own
    write is done, then hands the lead to the thread of the next queued write. The others
    sleep until their write is done (or the lead is theirs) and are woken exactly once, so
    fifty threads do not all wake to find their work already committed.
    """

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[Connection]],
        *,
        retry_alone: Callable[[Exception], bool] = lambda exc: True,
    ) -> None:
        self._transaction = transaction
        # Whether a failed batch's writes are worth retrying one by one: not when the
        # database is down, where each retry would only wait out the same failure.
        self._retry_alone = retry_alone
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._pending: list[_Write[Any]] = []
        self._pending_lock = threading.Lock()
        self._leading = False

    def run(self, apply: Callable[[Connection], T]) -> T:
        if self._pid != os.getpid():
            self._reset()  # a forked child: the parent's queue and leader are not ours
        write = _Write(apply)
        with self._pending_lock:
            self._pending.append(write)
            lead = not self._leading
            self._leading = True
        if not lead:
            write.wait()  # done by the leader, or the lead handed to us
        if not write.done:
            self._lead(write)
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]  # set when done without an error

    def _lead(self, own: _Write[Any]) -> None:
        successor: _Write[Any] | None = None
        try:
            while not own.done:
                with self._pending_lock:
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                self._commit_batch(batch, own)
        finally:
            with self._pending_lock:
                if self._pending:
                    successor = self._pending[0]  # its thread leads next
                else:
                    self._leading = False
            if successor is not None:
                successor.wake()

    def _commit_batch(self, batch: list[_Write[Any]], own: _Write[Any]) -> None:
        try:
            if len(batch) == 1:
                self._commit_alone(batch[0])
            else:
                try:
                    with self._transaction() as conn:
                        results = [write.apply(conn) for write in batch]
                except Exception as exc:
                    # Rolled back as a whole: give every write its own transaction and outcome,
                    # unless the database itself failed.
                    for write in batch:
                        if self._retry_alone(exc):
                            self._commit_alone(write)
                        else:
                            write.error, write.done = exc, True
                else:
                    for write, result in zip(batch, results, strict=True):
                        write.result, write.done = result, True
        finally:
            unfinished = []
            for write in batch:
                if write.done:
                    if write is not own:
                        write.wake()
                elif write is not own:
                    unfinished.append(write)
            if unfinished:
                # Interrupted by a BaseException: other threads' writes go back to the front of
                # the queue, and the lead passes on to one of them (see _lead).
                with self._pending_lock:
                    self._pending[:0] = unfinished

    def _commit_alone(self, write: _Write[Any]) -> None:
        try:
            with self._transaction() as conn:
                write.result = write.apply(conn)
        except Exception as exc:
            write.error = exc
        write.done = True
