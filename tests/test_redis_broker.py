"""The Redis transport make_celery selects: kombu's, with one Redis client object per channel.

Against a real redis-server (skipped locally without the binary, a failure in CI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.entity import Exchange, Queue
from kombu.messaging import Consumer

from ghapp_celery import GitHubApp
from ghapp_celery.tasks.redis_broker import Transport
from tests._redis import redis_server

QUEUE = Queue("github.issues", Exchange("github.issues"), routing_key="github.issues")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def celery_for(broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CELERY_BROKER_URL", broker)
    monkeypatch.setenv("GITHUBAPP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_SECRET", "s")
    return GitHubApp().celery


def count_clients(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made = [0]
    real_init = redis.Redis.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        made[0] += 1
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting_init)
    return made


def test_redis_urls_get_the_transport_and_a_users_choice_wins(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    celery = celery_for(broker, tmp_path, monkeypatch)
    with celery.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
    celery.conf.broker_transport = "kombu.transport.redis:Transport"
    with celery.connection_for_write() as conn:
        assert type(conn.transport) is not Transport


def test_a_hundred_messages_through_one_channel_build_one_sync_client(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    celery = celery_for(broker, tmp_path, monkeypatch)
    received: list[Any] = []
    with celery.connection_for_write() as conn:
        channel = conn.channel()
        producer = conn.Producer(channel)
        producer.publish({"n": -1}, exchange=QUEUE.exchange, routing_key="github.issues",
                         declare=[QUEUE])  # fmt: skip
        made = count_clients(monkeypatch)
        for n in range(100):
            producer.publish({"n": n}, exchange=QUEUE.exchange, routing_key="github.issues")
        # kombu alone builds one client per publish.
        assert made[0] <= 1, made[0]

        def on_message(body: Any, message: Any) -> None:
            received.append(body["n"])
            message.ack()  # the ack's bookkeeping pipeline borrows the same client

        with Consumer(conn.channel(), [QUEUE], callbacks=[on_message]):
            while len(received) < 101:
                conn.drain_events(timeout=5)
    assert received == list(range(-1, 100))
    assert made[0] <= 3, made[0]  # the consuming channel's own sync and async clients


def test_a_replaced_pool_gets_a_new_client(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    celery = celery_for(broker, tmp_path, monkeypatch)
    with celery.connection_for_write() as conn:
        channel = conn.channel()
        first = channel._create_client()
        assert channel._create_client() is first
        channel._pool = None  # what kombu does after a connection error
        second = channel._create_client()
        assert second is not first and second.connection_pool is channel.pool
        assert second.ping()
