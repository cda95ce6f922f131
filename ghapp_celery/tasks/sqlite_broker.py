# kombu is only partly typed: its base-class methods are untyped calls.
# mypy: disallow-untyped-calls=False
"""The embedded broker: a kombu virtual transport on one SQLite file, ``sqlite:///path``.

It keeps kombu's SQLAlchemy transport's tables (``kombu_queue``, ``kombu_message``, created
the same way), so ``sqla+sqlite:///`` on the same file reads the same messages, and differs
where that transport is slow on SQLite (it capped the embedded setup at ~90 runs/s):

* Sleeping. kombu's virtual transport sleeps its whole polling interval whenever a poll finds
  nothing, which includes the times the worker's prefetch window is full: with 8 threads and
  a 1 ms task, a worker ran 8 tasks and then slept 100 ms. Here an acknowledgement wakes the
  consumer at once, and after a message the next polls come quickly, backing off to the
  polling interval only while the queues stay empty (so an idle worker costs what it did).
* The ORM. A get was an ORM query, an ORM flush and a version check; here it is one
  ``DELETE ... RETURNING`` in an immediate transaction (a message handed out is gone from the
  table, which is what kombu's ``visible = 0`` meant: kombu never shows such a row again).
  Plain ``sqlite3`` also keeps SQLAlchemy's ORM out of the worker (~7 MB).
"""

from __future__ import annotations

import sqlite3
import threading
from time import monotonic
from typing import Any

from kombu.exceptions import BatchPublishError
from kombu.transport import virtual
from kombu.utils.json import dumps, loads

__all__ = ["Channel", "PublishBatch", "Transport"]

#: The first wait after a poll found nothing; doubled up to the transport's polling interval.
FIRST_WAIT = 0.002
BUSY_TIMEOUT = 30.0

# kombu.transport.sqlalchemy's tables, as its models create them on SQLite, plus an index of
# our own: kombu's schema has none on queue_id, so finding a queue's next message (or that it
# has none) walked every row, and queue_id sits after the payload, in its overflow pages.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS kombu_queue (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(200),
    UNIQUE (name)
);
CREATE TABLE IF NOT EXISTS kombu_message (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    visible BOOLEAN,
    timestamp DATETIME,
    payload TEXT NOT NULL,
    version SMALLINT NOT NULL,
    queue_id INTEGER,
    CONSTRAINT "FK_kombu_message_queue" FOREIGN KEY(queue_id) REFERENCES kombu_queue (id)
);
CREATE INDEX IF NOT EXISTS ix_kombu_message_visible ON kombu_message (visible);
CREATE INDEX IF NOT EXISTS ix_kombu_message_timestamp_id ON kombu_message (timestamp, id);
CREATE INDEX IF NOT EXISTS ix_kombu_message_timestamp ON kombu_message (timestamp);
CREATE INDEX IF NOT EXISTS ix_kombu_message_queue ON kombu_message (queue_id, timestamp, id);
"""
_QUEUE_ID = "SELECT id FROM kombu_queue WHERE name = ?"
_NEW_QUEUE = "INSERT OR IGNORE INTO kombu_queue (name) VALUES (?)"
_PUT = "INSERT INTO kombu_message (visible, payload, version, queue_id) VALUES (1, ?, 1, ?)"
_TAKE_FIRST = (
    "DELETE FROM kombu_message WHERE id = (SELECT id FROM kombu_message"
    " WHERE queue_id = ? AND visible != 0 ORDER BY timestamp, id LIMIT 1) RETURNING payload"
)
_ANY_VISIBLE = "SELECT 1 FROM kombu_message WHERE queue_id = ? AND visible != 0 LIMIT 1"
_SIZE = "SELECT count(*) FROM kombu_message WHERE queue_id = ? AND visible != 0"
_PURGE = "DELETE FROM kombu_message WHERE queue_id = ?"


def database_path(hostname: str) -> str:
    """The file of a ``sqlite:///path`` broker URL (kombu passes the URL as the hostname)."""
    return hostname.split("://", 1)[1].removeprefix("/") if "://" in hostname else hostname


class Channel(virtual.Channel):
    """One ``sqlite3`` connection per channel, opened on first use."""

    connection: Transport

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._db: sqlite3.Connection | None = None
        self._queue_ids: dict[str, int] = {}

    def _sqlite(self) -> sqlite3.Connection:
        if self._db is None:
            # A channel is used by one thread at a time (kombu's pools hand them out), but
            # not always the thread that opened it.
            client = self.connection.client
            assert client is not None  # the kombu Connection this transport belongs to
            db = sqlite3.connect(
                database_path(client.hostname),
                timeout=BUSY_TIMEOUT,
                isolation_level=None,  # autocommit; BEGIN IMMEDIATE where it matters
                check_same_thread=False,
            )
            db.execute("PRAGMA journal_mode=WAL")  # stored in the file: the web and workers
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def _queue_id(self, queue: str) -> int:
        queue_id = self._queue_ids.get(queue)
        if queue_id is None:
            db = self._sqlite()
            db.execute(_NEW_QUEUE, (queue,))
            (queue_id,) = db.execute(_QUEUE_ID, (queue,)).fetchone()
            self._queue_ids[queue] = queue_id
        return queue_id

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        self._queue_id(queue)

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        row = (dumps(message), self._queue_id(queue))
        batch = kwargs.get("_publish_batch")
        if isinstance(batch, PublishBatch):
            batch.rows.append(row)
        else:
            self._sqlite().execute(_PUT, row)

    def create_publish_batch(self, max_size: int) -> PublishBatch:
        """kombu's ``Producer.batch()`` protocol (as its Redis transport offers)."""
        return PublishBatch(self, max_size)

    def _put_many(self, rows: list[tuple[str, int]]) -> None:
        db = self._sqlite()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_PUT, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        queue_id = self._queue_id(queue)
        db = self._sqlite()
        # Look first without the write lock (WAL readers never wait): most polls of a quiet
        # queue (github.default, say) find nothing and should not queue behind publishers.
        if db.execute(_ANY_VISIBLE, (queue_id,)).fetchone() is None:
            raise virtual.Empty()
        # IMMEDIATE: take the write lock first, so the row chosen is still there to delete
        # when another process's worker polls the same queue.
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(_TAKE_FIRST, (queue_id,)).fetchone()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if row is None:
            raise virtual.Empty()
        self.connection.received()
        return loads(row[0])

    def _size(self, queue: str) -> int:
        (count,) = self._sqlite().execute(_SIZE, (self._queue_id(queue),)).fetchone()
        return int(count)

    def _purge(self, queue: str) -> int:
        return int(self._sqlite().execute(_PURGE, (self._queue_id(queue),)).rowcount)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self.connection.wake()  # a prefetch slot is free: poll now, not after a sleep

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        self.connection.wake()

    def close(self) -> None:
        super().close()  # may put unacknowledged messages back: before the file closes
        if self._db is not None:
            self._db.close()
            self._db = None


class PublishBatch:
    """Messages published inside ``with producer.batch():``, routed as usual and inserted in
    one transaction when the batch is flushed (one commit for all, not one per message)."""

    def __init__(self, channel: Channel, max_size: int) -> None:
        self.channel = channel
        self.max_size = max_size
        self.rows: list[tuple[str, int]] = []
        self._closed = False

    def publish(self, message: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise RuntimeError("the publish batch is closed")
        result = self.channel.basic_publish(message, _publish_batch=self, **kwargs)
        if len(self.rows) >= self.max_size:
            self.flush()
        return result

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if rows:
            try:
                self.channel._put_many(rows)
            except sqlite3.Error as exc:  # nothing of the batch was stored
                raise BatchPublishError("the embedded broker could not store the batch") from exc

    def discard(self) -> None:
        self.rows = []

    def close(self) -> None:
        self.rows = []
        self._closed = True


class Transport(virtual.Transport):
    """Waits on acknowledgements and backs off while idle, instead of a fixed sleep."""

    Channel = Channel
    implements = virtual.Transport.implements.extend(batch_publish=True)
    can_parse_url = True  # the URL is the database path, not host and port
    driver_type = "sql"
    driver_name = "sqlite3"
    connection_errors = (sqlite3.OperationalError,)
    polling_interval = 0.1  # the longest wait while every queue stays empty

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._wake = threading.Event()
        self._wait = FIRST_WAIT

    def driver_version(self) -> str:
        return sqlite3.sqlite_version

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
