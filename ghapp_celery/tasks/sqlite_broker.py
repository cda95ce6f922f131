# kombu is only partly typed: its base-class methods are untyped calls.
# mypy: disallow-untyped-calls=False
"""The embedded broker: kombu's SQLAlchemy transport, with a faster hand-off on SQLite.

Broker URL ``sqlite:///path/broker.sqlite`` (the default when no broker is configured). It
uses kombu's own tables (``kombu_queue``, ``kombu_message``), so ``sqla+sqlite:///`` and this
transport can read each other's messages, and changes two things kombu's generic SQL
transport does slowly on SQLite (measured: it capped the embedded setup at ~90 runs/s):

* Sleeping. kombu's virtual transport sleeps its whole polling interval whenever a poll finds
  nothing, which includes the times the worker's prefetch window is full: with 8 threads and
  a 1 ms task, a worker ran 8 tasks and then slept 100 ms. Here an acknowledgement wakes the
  consumer at once, and after a message the next polls come quickly, backing off to the
  polling interval only while the queues stay empty (so an idle worker costs what it did).
* The ORM. A get was an ORM query, an ORM flush and a version check; here it is one
  ``DELETE ... RETURNING`` in an immediate transaction (a message handed out is gone from the
  table, which is what kombu's ``visible = 0`` meant: kombu never shows such a row again).
"""

from __future__ import annotations

import sqlite3
import threading
from time import monotonic
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqlalchemy
from kombu.transport import virtual
from kombu.utils.json import dumps, loads

__all__ = ["Channel", "Transport"]

#: The first wait after a poll found nothing; doubled up to the transport's polling interval.
FIRST_WAIT = 0.002
BUSY_TIMEOUT = 30.0


class Channel(kombu_sqlalchemy.Channel):
    """kombu's SQLAlchemy channel with plain ``sqlite3`` statements for put and get."""

    connection: Transport

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._db: sqlite3.Connection | None = None
        self._queue_ids: dict[str, int] = {}
        # The table name comes from the transport options (kombu's default: kombu_message),
        # i.e. from the app's configuration, never from a message.
        table = self.message_tablename
        self._insert = (
            f"INSERT INTO {table} (visible, payload, version, queue_id) VALUES (1, ?, 1, ?)"  # noqa: S608
        )
        self._take_first = (
            f"DELETE FROM {table} WHERE id = (SELECT id FROM {table}"  # noqa: S608
            " WHERE queue_id = ? AND visible != 0 ORDER BY timestamp, id LIMIT 1)"
            " RETURNING payload"
        )
        self._count = f"SELECT count(*) FROM {table} WHERE queue_id = ? AND visible != 0"  # noqa: S608

    def _sqlite(self) -> sqlite3.Connection:
        if self._db is None:
            engine, _ = self._open()  # kombu creates the tables on first use
            # A channel is used by one thread at a time (kombu's pools hand them out), but
            # not always the thread that opened it.
            self._db = sqlite3.connect(
                engine.url.database,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,  # we say BEGIN IMMEDIATE ourselves
                check_same_thread=False,
            )
        return self._db

    def _queue_id(self, queue: str) -> int:
        queue_id = self._queue_ids.get(queue)
        if queue_id is None:
            queue_id = self._queue_ids[queue] = int(self._get_or_create(queue).id)
        return queue_id

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # (kombu's two base classes name the second argument differently)
        queue_id = self._queue_id(queue)
        self._sqlite().execute(self._insert, (dumps(payload), queue_id))

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        queue_id = self._queue_id(queue)
        db = self._sqlite()
        # IMMEDIATE: take the write lock first, so the row chosen is still there to delete
        # when another process's worker polls the same queue.
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(self._take_first, (queue_id,)).fetchone()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if row is None:
            raise virtual.Empty()
        self.connection.received()
        return loads(row[0])

    def _size(self, queue: str) -> int:
        (count,) = self._sqlite().execute(self._count, (self._queue_id(queue),)).fetchone()
        return int(count)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self.connection.wake()  # a prefetch slot is free: poll now, not after a sleep

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        self.connection.wake()

    def close(self) -> None:
        super().close()
        if self._db is not None:
            self._db.close()
            self._db = None


class Transport(kombu_sqlalchemy.Transport):
    """Waits on acknowledgements and backs off while idle, instead of a fixed sleep."""

    Channel = Channel
    polling_interval = 0.1  # the longest wait while every queue stays empty

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._wake = threading.Event()
        self._wait = FIRST_WAIT

    def wake(self) -> None:
        self._wake.set()

    def received(self) -> None:
        self._wait = FIRST_WAIT

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        started = monotonic()
        cycle = self.cycle
        assert cycle is not None  # set when the transport is created
        while True:
            try:
                cycle.get(self._deliver, timeout=timeout)
                return
            except virtual.Empty:
                waited = monotonic() - started
                if timeout is not None and waited >= timeout:
                    raise TimeoutError() from None  # socket.timeout, as kombu raises
                wait = self._wait
                if timeout is not None:
                    wait = min(wait, timeout - waited)
                self._wake.wait(wait)
                self._wake.clear()
                self._wait = min(self._wait * 2, self.polling_interval or FIRST_WAIT)
