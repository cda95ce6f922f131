"""SIGTERM under load, as Kubernetes or systemd stop a process: the web process and a worker.

The web process (uvicorn) stops taking connections and finishes the requests in flight: each
delivery is either recorded and answered, or never answered; none is answered 2xx without
being in the store. A worker's warm shutdown finishes the handlers it is running and leaves
the rest to the broker (acks_late) and the sweeper; no run executes twice, since nothing was
killed. The same invariants as the kill tests (invariants.py) are checked from outside.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests._redis import RedisServer

from .harness import deployment, wait_until
from .invariants import check
from .load import Load

pytestmark = pytest.mark.faults

AFTER = 4.0  # seconds of load after the fault, before waiting for every run to end


@pytest.mark.timeout(150)
def test_web_sigterm_under_load(tmp_path: Path, pg_store: str) -> None:
    """Redis and PostgreSQL. SIGTERM reaches the web process while a burst of thirty is in
    flight; a new one starts on the port once it has exited."""
    with (
        RedisServer(tmp_path / "redis") as redis,
        deployment(tmp_path, redis.url, pg_store) as deploy,
    ):
        load = Load(deploy.url).start()
        deploy.warm_up()
        down_from = time.time()
        load.burst(30)
        wait_until(
            lambda: any(a.sent >= down_from and a.answered for a in load.snapshot()),
            10,
            "the first answer of the burst",
            step=0.002,
        )
        started_stop = time.monotonic()
        exit_code = deploy.stop_web(timeout=20)
        stop_seconds = time.monotonic() - started_stop
        deploy.start_web()
        down = [(down_from, time.time())]
        time.sleep(AFTER)
        load.stop()
        settled = deploy.wait_settled()
        exits = deploy.stop()
    report = check(deploy, load, web_down=down, unexpected_exits=exits)
    burst = [a for a in load.snapshot() if a.kind == "signed" and a.sent >= down_from]
    answered_2xx = sum(a.ok for a in burst)
    # Graceful: what the process had taken it answered; what it never answered (refused at
    # the closed socket) it never recorded either.
    cut_but_recorded = [
        a.delivery_id
        for a in burst
        if not a.answered and deploy.store.get_delivery(a.delivery_id) is not None
    ]
    report.facts.update(
        settled=settled,
        burst_answered_2xx=answered_2xx,
        burst_unanswered=sum(not a.answered for a in burst),
        stop_seconds=round(stop_seconds, 2),
    )
    print(report)
    report.assert_held()
    # uvicorn shut down by itself (no SIGKILL after the timeout); it exits by re-raising the
    # SIGTERM once its shutdown is done, so the code is -15.
    assert exit_code in (0, -15) and stop_seconds < 20, str(report)
    assert answered_2xx > 0, str(report)
    assert cut_but_recorded == [], str(report)


@pytest.mark.timeout(150)
def test_worker_sigterm_mid_run(tmp_path: Path, pg_store: str) -> None:
    """Redis and PostgreSQL. A worker gets SIGTERM (a warm shutdown) while it executes
    handlers; a replacement starts. The runs it was executing finish there, once; what it had
    not started runs in the replacement."""
    with (
        RedisServer(tmp_path / "redis") as redis,
        deployment(tmp_path, redis.url, pg_store) as deploy,
    ):
        load = Load(deploy.url).start()
        deploy.warm_up()
        victim = deploy.worker_procs[0]

        def executing() -> list[str]:
            runs = deploy.open_executions(victim.pid)
            return runs if len(runs) >= 2 else []

        in_flight = wait_until(executing, 30, "the worker to be executing two handlers", 0.02)
        exit_code = deploy.stop_worker(victim)
        deploy.add_worker()
        time.sleep(AFTER)
        load.stop()
        settled = deploy.wait_settled()
        exits = deploy.stop()
    report = check(deploy, load, unexpected_exits=exits)
    report.facts.update(settled=settled, in_flight_at_sigterm=len(in_flight))
    print(report)
    report.assert_held()
    assert exit_code == 0, str(report)
