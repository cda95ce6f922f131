"""Nothing is lost when a whole worker is SIGKILLed mid-task (DESIGN section 2).

The first attempt of ``slow_once`` sleeps for a minute; the test kills the worker's whole
process group while it runs, starts a new worker, and the run must end succeeded on its second
attempt: on the embedded SQLite broker (which loses the message: the store's lease and the
sweeper bring it back) and on Redis (acks_late gives the message back after the visibility
timeout; the sweeper covers it too, and the claim keeps the two from running it twice).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from ghapp_celery.testing import serve
from tests._redis import redis_server
from tests._workers import CeleryWorker, Pool, sqlite_broker_url
from tests.test_background import (
    QUEUES,
    environment,
    issue,
    make_app,
    only_run,
    post,
    wait_for,
)


def crash_and_recover(tmp: Path, broker: str, monkeypatch: pytest.MonkeyPatch, pool: Pool) -> None:
    env = environment(tmp, broker)
    app = make_app(monkeypatch, env)
    app.store.upgrade()
    deliveries = []
    first = CeleryWorker(
        "tests.bgapp:celery", broker, tmp / "w1", pool=pool, concurrency=2, queue=QUEUES, env=env
    )
    with first, serve(app.web) as url:  # type: ignore[attr-defined]
        for _ in range(2):
            body, headers, delivery_id = issue("assigned")
            assert post(url, body, headers).status_code == 202
            deliveries.append(delivery_id)
        markers = [tmp / "state" / f"slow_once-{d}.started" for d in deliveries]
        deadline = time.monotonic() + 60
        while not all(m.exists() for m in markers):
            assert time.monotonic() < deadline, first.log_tail()
            time.sleep(0.05)
        for delivery_id in deliveries:
            assert only_run(
                app.store.get_delivery(delivery_id, with_payload=False)
            ).state.value == ("started")
        first.kill(signal.SIGKILL, whole_group=True)

    second = CeleryWorker(
        "tests.bgapp:celery", broker, tmp / "w2", pool=pool, concurrency=2, queue=QUEUES, env=env
    )
    with second:
        # Nothing renews the dead worker's leases (1.5 s) any more: once they expire the
        # sweeper republishes the runs and the new worker claims them.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            app.sweep()
            states = {
                only_run(app.store.get_delivery(d, with_payload=False)).state.value
                for d in deliveries
            }
            if states == {"succeeded"}:
                break
            time.sleep(0.5)
        for delivery_id in deliveries:
            run = only_run(wait_for(app, delivery_id, timeout=5))
            assert (run.state.value, run.attempts) == ("succeeded", 2), second.log_tail()


def test_whole_worker_killed_on_the_sqlite_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_and_recover(
        tmp_path, sqlite_broker_url(tmp_path / "broker.sqlite"), monkeypatch, "prefork"
    )


def test_whole_worker_killed_on_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with redis_server(tmp_path / "redis") as broker:
        crash_and_recover(tmp_path, broker, monkeypatch, "threads")
