"""A Redis restart under a running worker: the worker reconnects and every run finishes.

Real processes: a redis-server this test ``kill -9``s and starts again on the same port, a
threads-pool Celery worker of tests.bgapp on it with a SQLite store, deliveries over HTTP.

The outage comes while the worker runs a 5 s handler and waits (BRPOP) for more: the shape
that, on kombu 5.7.0 / redis-py 8.1.0, made the worker exit with "Unrecoverable error:
AttributeError(\"'NoneType' object has no attribute 'hostname'\")" (see
ghapp_celery/tasks/redis_broker.py). Two kinds of restart:

* persistent: an fsynced append-only file; Redis comes back with every key it had.
* empty: no persistence; every queued or unacknowledged message is gone. The store still knows
  each run, and the sweeper publishes what the broker lost.

Deliveries posted while Redis is down are recorded but cannot be published; the sweeper
publishes them once Redis is back.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis as redis_py
from kombu.connection import Connection

from ghapp_celery import GitHubApp
from ghapp_celery.tasks.redis_broker import Transport
from ghapp_celery.testing import serve
from tests._redis import RedisServer
from tests._workers import CeleryWorker
from tests.test_background import environment, issue, make_app, only_run, post, wait_for

UNRECOVERABLE = "Unrecoverable error"


def state(app: GitHubApp, delivery_id: str) -> str:
    record = app.store.get_delivery(delivery_id, with_payload=False)
    assert record is not None
    return only_run(record).state.value


def post_issue(url: str, action: str) -> str:
    body, headers, delivery_id = issue(action)
    response = post(url, body, headers)
    assert response.status_code == 202, response.text
    return delivery_id


@pytest.mark.parametrize("persistent", [True, False], ids=["with-data", "empty"])
def test_worker_survives_a_redis_kill_and_finishes_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, persistent: bool
) -> None:
    redis = RedisServer(tmp_path / "redis", persistent=persistent).start()
    try:
        env = {
            **environment(tmp_path, redis.url),
            # The store-side sweep below republishes what an empty Redis lost at once.
            "GITHUBAPP_SWEEP_QUEUED_AFTER": "0.5",
        }
        app = make_app(monkeypatch, env)
        worker = CeleryWorker(
            "tests.bgapp:celery",
            redis.url,
            tmp_path / "worker",
            pool="threads",
            concurrency=4,  # free slots: the worker is in BRPOP when Redis dies
            queue="github.issues",
            env=env,
            name="restart",
        )
        with serve(app.web) as url, worker:  # type: ignore[attr-defined]
            before = [post_issue(url, "opened") for _ in range(3)]
            for delivery_id in before:
                assert only_run(wait_for(app, delivery_id)).state.value == "succeeded"
            long_run = post_issue(url, "milestoned")  # blocks for 5 s in the worker
            wait_for(app, long_run, states={"started"}, timeout=30)

            redis.kill()
            time.sleep(0.5)  # the worker sees the connection drop
            during = [post_issue(url, "opened") for _ in range(2)]  # recorded, not published
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
            redis.start()
            back = time.monotonic()

            after = [post_issue(url, "opened") for _ in range(3)]
            everything = [*before, long_run, *during, *after]
            first_done: float | None = None
            deadline = back + 45
            while time.monotonic() < deadline:
                assert worker.proc.poll() is None, f"worker exited:\n{worker.log_tail()}"
                states = {d: state(app, d) for d in everything}
                if first_done is None and any(states[d] == "succeeded" for d in after):
                    first_done = time.monotonic() - back
                if all(s == "succeeded" for s in states.values()):
                    break
                app.sweep()  # what celery beat runs every sweep_interval
                time.sleep(0.2)
            else:
                pytest.fail(f"runs not all succeeded: {states}\n{worker.log_tail()}")
            print(f"Redis back -> first new run succeeded: {first_done:.2f} s")

            # The long run was running when Redis died: it finished once, not twice.
            long = only_run(wait_for(app, long_run))
            assert (long.state.value, long.attempts) == ("succeeded", 1)
            assert worker.proc.poll() is None
        assert UNRECOVERABLE not in worker.log_file.read_text(errors="replace")
    finally:
        redis.stop()


@pytest.mark.parametrize(
    ("transport", "raises"),
    [
        (Transport, redis_py.exceptions.ConnectionError),
        # kombu's own: the bug our Channel._connparams works around. When this stops raising
        # AttributeError, kombu fixed it and the override can go.
        ("kombu.transport.redis:Transport", AttributeError),
    ],
    ids=["ours", "kombu"],
)
def test_a_channel_without_its_connection_raises_a_connection_error(
    tmp_path: Path, transport: object, raises: type[Exception]
) -> None:
    with RedisServer(tmp_path / "redis") as server:
        conn = Connection(server.url, transport=transport)
        try:
            channel = conn.channel()
            channel._pool = None  # what a connection error leaves behind
            conn.transport.client = None  # what Connection.collect() does to the transport
            with pytest.raises(raises), channel.conn_or_acquire() as client:
                client.ping()
        finally:
            conn.release()
