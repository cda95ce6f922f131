"""Processes SIGKILLed while signed deliveries arrive: a worker mid-run, the web mid-request."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests._redis import RedisServer
from tests._workers import sqlite_broker_url

from .harness import deployment, wait_until
from .invariants import check, read_journal
from .load import Load

pytestmark = pytest.mark.faults

AFTER = 4.0  # seconds of load after the fault, before waiting for every run to end


@pytest.mark.timeout(150)
def test_worker_sigkill_mid_run(tmp_path: Path) -> None:
    """Embedded broker and SQLite store. A worker's whole process group is SIGKILLed while it
    executes handlers; a replacement starts. The killed runs come back through their expired
    leases and the sweeper, and run again, never while another execution of them runs."""
    broker = sqlite_broker_url(tmp_path / "broker.sqlite")
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with deployment(tmp_path, broker, store) as deploy:
        load = Load(deploy.url).start()
        deploy.warm_up()
        victim = deploy.worker_procs[0]

        def executing() -> list[str]:
            runs = deploy.open_executions(victim.pid)
            return runs if len(runs) >= 2 else []

        wait_until(executing, 30, "the worker to be executing two handlers", step=0.02)
        deploy.kill_worker(victim)
        deploy.add_worker()
        time.sleep(AFTER)
        load.stop()
        settled = deploy.wait_settled()
        exits = deploy.stop()
    report = check(deploy, load, unexpected_exits=exits)
    journal = read_journal(deploy.journal, deploy.killed_pids())
    cut_short = [e for runs in journal.values() for e in runs if e.end is None]
    report.facts.update(settled=settled, cut_short=len(cut_short))
    print(report)
    report.assert_held()
    # The fault bit: executions were cut short by the kill (and ran again: checked above).
    assert len(cut_short) >= 2, str(report)


@pytest.mark.timeout(150)
def test_web_sigkill_mid_request(tmp_path: Path, pg_store: str) -> None:
    """Redis and PostgreSQL. The web process is SIGKILLed twice while requests are in flight,
    and started again on its port each time:

    1. with three signed deliveries half sent, as the first of a burst of thirty is
       answered (the others being read, recorded or published);
    2. with Redis paused (SIGSTOP) so that deliveries are recorded but their publish hangs:
       killed between the store's commit and the answer, they were never published.

    Only the deliveries answered 2xx must be in the store; every run in it (answered or not)
    must still run, once: the ones never published come back through the sweeper."""
    with (
        RedisServer(tmp_path / "redis") as redis,
        deployment(tmp_path, redis.url, pg_store) as deploy,
    ):
        assert redis.proc is not None
        load = Load(deploy.url).start()
        deploy.warm_up()
        down: list[tuple[float, float]] = []

        partial = [load.partial_signed() for _ in range(3)]
        down_from = time.time()
        load.burst(30)
        wait_until(
            lambda: any(a.sent >= down_from and a.answered for a in load.snapshot()),
            10,
            "the first answer of the burst",
            step=0.002,
        )
        deploy.kill_web()
        for sock in partial:
            sock.close()
        deploy.start_web()
        down.append((down_from, time.time()))
        time.sleep(2)

        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            down_from = time.time()
            load.burst(5)

            def recorded_in_flight() -> list[str]:
                waiting = [
                    a.delivery_id
                    for a in load.snapshot()
                    if a.kind == "signed" and not a.answered and a.error is None
                ]
                return [d for d in waiting if deploy.store.get_delivery(d) is not None]

            # Recorded, then stuck publishing: the two scheduler threads block on Redis (the
            # deliveries queued behind them are not recorded).
            wait_until(recorded_in_flight, 10, "a delivery recorded, its answer pending")
            deploy.kill_web()
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        deploy.start_web()
        down.append((down_from, time.time()))

        time.sleep(AFTER)
        load.stop()
        settled = deploy.wait_settled()
        exits = deploy.stop()
    report = check(deploy, load, web_down=down, unexpected_exits=exits)
    cut = [a for a in load.snapshot() if a.kind == "signed" and not a.answered]
    recorded_cut = [a for a in cut if deploy.store.get_delivery(a.delivery_id) is not None]
    report.facts.update(
        settled=settled,
        signed_cut=len(cut),
        recorded_but_cut=len(recorded_cut),
        web_down=[round(end - start, 2) for start, end in down],
    )
    print(report)
    report.assert_held()
    # The fault bit: deliveries were in flight when the web process died, some of them
    # recorded already.
    assert len(cut) >= 3 and recorded_cut, str(report)
