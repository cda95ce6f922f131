"""The embedded broker's transport (ghapp_celery.tasks.sqlite_broker) through kombu's own API:
messages in order, gone once handed out, readable by kombu's SQLAlchemy transport and back,
and a full prefetch window refilled on acknowledgement rather than after a polling sleep."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Consumer, Producer

import ghapp_celery.tasks.celery_app  # noqa: F401  (registers the "sqlite" scheme)
from ghapp_celery.tasks import sqlite_broker
from ghapp_celery.tasks.sqlite_broker import Transport
from tests._workers import sqlite_broker_url

QUEUE = Queue("github.issues", Exchange("github.issues"), routing_key="github.issues")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "broker.sqlite"


def publish(url: str, bodies: list[dict[str, Any]]) -> None:
    with Connection(url) as conn:
        producer = Producer(conn.default_channel)
        for body in bodies:
            producer.publish(body, exchange=QUEUE.exchange, routing_key="github.issues",
                             declare=[QUEUE])  # fmt: skip


def consume(url: str, n: int, *, prefetch: int = 10, ack: bool = True) -> list[Any]:
    got: list[Any] = []
    with Connection(url) as conn:
        channel = conn.channel()
        channel.basic_qos(0, prefetch, False)

        def on_message(body: Any, message: Any) -> None:
            got.append(body)
            if ack:
                message.ack()

        with Consumer(channel, [QUEUE], callbacks=[on_message]):
            while len(got) < n:
                conn.drain_events(timeout=5)
    return got


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM kombu_message").fetchone()[0])


def test_the_sqlite_scheme_selects_this_transport(broker: Path) -> None:
    with Connection(sqlite_broker_url(broker)) as conn:
        assert isinstance(conn.transport, Transport)


def test_messages_arrive_in_order_and_leave_the_table(broker: Path) -> None:
    url = sqlite_broker_url(broker)
    publish(url, [{"n": n} for n in range(20)])
    assert rows(broker) == 20
    with Connection(url) as conn:
        assert conn.default_channel._size("github.issues") == 20
    assert consume(url, 20) == [{"n": n} for n in range(20)]
    assert rows(broker) == 0  # handed out = deleted (kombu would keep them, invisible)


@pytest.mark.parametrize(
    ("writer", "reader"), [("sqla+sqlite", "sqlite"), ("sqlite", "sqla+sqlite")]
)
def test_kombus_sqlalchemy_transport_reads_the_same_tables(
    broker: Path, writer: str, reader: str
) -> None:
    publish(sqlite_broker_url(broker, scheme=writer), [{"n": 1}, {"n": 2}])
    assert consume(sqlite_broker_url(broker, scheme=reader), 2) == [{"n": 1}, {"n": 2}]


def test_an_ack_refills_a_full_prefetch_window_without_waiting_for_a_poll(
    broker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One message in flight allowed and polling waits of a minute: the second message can
    only arrive soon after the first is acknowledged if the ack wakes the consumer."""
    monkeypatch.setattr(Transport, "polling_interval", 60.0)
    monkeypatch.setattr(sqlite_broker, "FIRST_WAIT", 60.0)  # no quick polls after a message
    url = sqlite_broker_url(broker)
    publish(url, [{"n": 1}, {"n": 2}])
    got: list[Any] = []
    with Connection(url) as conn:
        channel = conn.channel()
        channel.basic_qos(0, 1, False)
        pending: list[Any] = []

        def received(body: Any, message: Any) -> None:
            got.append(body)
            pending.append(message)

        with Consumer(channel, [QUEUE], callbacks=[received]):
            conn.drain_events(timeout=5)
            assert got == [{"n": 1}]
            # The window is full: the consumer now waits. Ack from another thread, as a
            # worker's pool does, while it waits.
            timer = threading.Timer(0.2, pending[0].ack)
            timer.start()
            started = time.monotonic()
            conn.drain_events(timeout=10)
            waited = time.monotonic() - started
            timer.join()
    assert got == [{"n": 1}, {"n": 2}]
    # Without the wake-up the consumer sleeps out the whole wait (10 s here, capped by the
    # drain timeout) before it looks again.
    assert waited < 5, waited


def test_a_poll_searches_its_queue_by_index_not_the_whole_table(broker: Path) -> None:
    """kombu's schema has no index on queue_id: each poll of a quiet queue walked every
    message of the busy ones, into their overflow pages (queue_id comes after the payload)."""
    publish(sqlite_broker_url(broker), [{"n": 1}])  # creates the tables
    with sqlite3.connect(broker) as db:
        for statement in (sqlite_broker._ANY_VISIBLE, sqlite_broker._TAKE_FIRST):
            plan = [row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}", (1,))]
            assert not any(step.startswith("SCAN") for step in plan), plan
            assert any("ix_kombu_message_queue" in step for step in plan), plan


def test_a_producer_batch_stores_its_messages_together_at_the_end(broker: Path) -> None:
    """kombu's Producer.batch(): nothing is in the table until the batch ends, then all of it
    (one transaction); a batch left by an exception stores nothing."""
    url = sqlite_broker_url(broker)
    with Connection(url) as conn:
        producer = Producer(conn.default_channel)
        producer.publish({"n": 0}, exchange=QUEUE.exchange, routing_key="github.issues",
                         declare=[QUEUE])  # fmt: skip
        with producer.batch():
            for n in range(1, 6):
                producer.publish({"n": n}, exchange=QUEUE.exchange, routing_key="github.issues")
            assert rows(broker) == 1  # only the first, unbatched message
        assert rows(broker) == 6
        with pytest.raises(RuntimeError), producer.batch():
            producer.publish({"n": 99}, exchange=QUEUE.exchange, routing_key="github.issues")
            raise RuntimeError("the caller failed before the batch ended")
    assert rows(broker) == 6
    assert consume(url, 6) == [{"n": n} for n in range(6)]
