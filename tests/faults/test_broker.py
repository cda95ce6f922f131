"""Redis faults while signed deliveries arrive: killed and restarted empty; stopped at
publish time. Redis is the broker, PostgreSQL the store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests._redis import RedisServer

from .harness import deployment, wait_until
from .invariants import BROKER_OUTAGE, check
from .load import Load

pytestmark = pytest.mark.faults

AFTER = 4.0  # seconds of load after the fault, before waiting for every run to end
OUTAGE = 4.0


@pytest.mark.timeout(150)
def test_redis_kill_and_restart(tmp_path: Path, pg_store: str) -> None:
    """redis-server is SIGKILLed while workers execute handlers and wait for messages, and
    started again empty on the same port (no persistence: every queued and unacknowledged
    message is gone). The workers and beat reconnect; what Redis lost, the store still knows
    and the sweeper publishes again."""
    redis = RedisServer(tmp_path / "redis", persistent=False).start()
    try:
        with deployment(tmp_path, redis.url, pg_store) as deploy:
            load = Load(deploy.url).start()
            deploy.warm_up()
            executing = wait_until(deploy.open_executions, 30, "handlers to be executing")
            redis.kill()
            killed_at = time.time()
            time.sleep(OUTAGE)
            redis.start()
            back_at = time.time()
            time.sleep(AFTER)
            load.stop()
            settled = deploy.wait_settled()
            exits = deploy.stop()
    finally:
        redis.stop()
    report = check(deploy, load, allowed=BROKER_OUTAGE, unexpected_exits=exits)
    during = [a for a in load.snapshot() if a.kind == "signed" and killed_at <= a.sent <= back_at]
    report.facts.update(
        settled=settled,
        executing_at_kill=len(executing),
        answered_during_outage=sum(a.ok for a in during),
    )
    print(report)
    report.assert_held()
    # The fault bit: handlers were running when Redis died, and deliveries arrived while it
    # was down.
    assert executing and len(during) >= 5, str(report)


@pytest.mark.timeout(150)
def test_broker_unreachable_at_publish(tmp_path: Path, pg_store: str) -> None:
    """redis-server is stopped while deliveries keep arriving, then started again (with its
    append-only file: what it had queued is back). Deliveries that arrive meanwhile are
    recorded but cannot be published: each is answered 202 with its run ``received``, and
    must still run, through the sweeper, once Redis is back."""
    redis = RedisServer(tmp_path / "redis", persistent=True).start()
    try:
        with deployment(tmp_path, redis.url, pg_store) as deploy:
            load = Load(deploy.url).start()
            deploy.warm_up()
            redis.stop()
            stopped_at = time.time()
            time.sleep(OUTAGE)
            redis.start()
            back_at = time.time()
            time.sleep(AFTER)
            load.stop()
            settled = deploy.wait_settled()
            exits = deploy.stop()
    finally:
        redis.stop()
    report = check(deploy, load, allowed=BROKER_OUTAGE, unexpected_exits=exits)
    unpublished = [
        a
        for a in load.snapshot()
        if a.ok and stopped_at <= a.sent <= back_at and a.run_states == ("received",)
    ]
    report.facts.update(settled=settled, answered_unpublished=len(unpublished))
    print(report)
    report.assert_held()
    # The fault bit: deliveries were answered 2xx while their runs could not be published.
    assert len(unpublished) >= 5, str(report)
