"""Group commit on SQLite: writes queued behind a busy writer share one transaction, each
thread still gets its own result, and one failing write does not fail the others."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import OperationalError

from ghapp_celery.store import DeliveryStore, RunPlan, RunState, StoreUnavailable
from tests.test_store import make_delivery

PLAN = [RunPlan("welcome", "ghapp.welcome", "github.issues")]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeliveryStore]:
    s = DeliveryStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    s.upgrade()
    yield s
    s.dispose()


def count_commits(store: DeliveryStore) -> list[int]:
    commits = [0]

    @event.listens_for(store._engine, "commit")
    def on_commit(conn: Connection) -> None:
        commits[0] += 1

    return commits


def hold_writer(store: DeliveryStore, release: threading.Event) -> threading.Thread:
    """A write that keeps the writer busy until ``release``: others must queue behind it."""
    entered = threading.Event()

    def slow(conn: Connection) -> None:
        entered.set()
        release.wait(10)

    thread = threading.Thread(target=store._write, args=(slow,))
    thread.start()
    assert entered.wait(10)
    return thread


def wait_queued(store: DeliveryStore, n: int) -> None:
    assert store._combiner is not None
    deadline = time.monotonic() + 10
    while len(store._combiner._pending) < n:
        assert time.monotonic() < deadline, "the writes never queued"
        time.sleep(0.005)


def run_queued(store: DeliveryStore, threads: list[threading.Thread]) -> None:
    """Start ``threads`` while a write keeps the writer busy, so each queues one write behind
    it; then let the writer go and wait for all of them."""
    release = threading.Event()
    holder = hold_writer(store, release)
    for t in threads:
        t.start()
    wait_queued(store, len(threads))
    release.set()
    for t in [holder, *threads]:
        t.join(10)
        assert not t.is_alive(), "a queued write was never committed"


def test_writes_queued_behind_a_busy_writer_share_one_commit(store: DeliveryStore) -> None:
    deliveries = [make_delivery() for _ in range(10)]
    commits = count_commits(store)
    results: dict[str, list[str]] = {}

    def record(d: object) -> None:
        runs = store.record(d, PLAN)  # type: ignore[arg-type]
        results[d.id] = [r.delivery_id for r in runs]  # type: ignore[attr-defined]

    threads = [threading.Thread(target=record, args=(d,)) for d in deliveries]
    run_queued(store, threads)
    # The holder's transaction, then one for all ten queued writes.
    assert commits[0] == 2
    # Every thread got its own delivery's run back, and every row is there.
    assert results == {d.id: [d.id] for d in deliveries}
    assert store.counts()[RunState.RECEIVED] == 10


def test_a_failing_write_fails_alone(store: DeliveryStore) -> None:
    good = [make_delivery() for _ in range(5)]
    outcomes: dict[str, object] = {}

    def broken(conn: Connection) -> None:  # a constraint: this statement's own problem
        conn.execute(text("INSERT INTO ghapp_deliveries (id) VALUES ('x')"))

    def run(name: str, write: object) -> None:
        try:
            outcomes[name] = write()  # type: ignore[operator]
        except Exception as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=("broken", lambda: store._write(broken)))]
    threads += [
        threading.Thread(target=run, args=(d.id, lambda d=d: store.record(d, PLAN))) for d in good
    ]
    run_queued(store, threads)
    assert isinstance(outcomes.pop("broken"), StoreUnavailable)
    assert all(isinstance(v, list) and len(v) == 1 for v in outcomes.values()), outcomes
    assert store.counts()[RunState.RECEIVED] == 5


def test_two_claims_of_one_run_in_one_batch_one_wins(store: DeliveryStore) -> None:
    (run,) = store.record(make_delivery(), PLAN, queued=True)
    claims: list[object] = []
    threads = [
        threading.Thread(target=lambda: claims.append(store.claim(run.id, lease_seconds=60)))
        for _ in range(4)
    ]
    run_queued(store, threads)
    won = [c for c in claims if c is not None]
    assert len(claims) == 4 and len(won) == 1
    assert store.get_run(run.id).attempts == 1  # type: ignore[union-attr]


def test_a_write_alone_is_committed_at_once(store: DeliveryStore) -> None:
    commits = count_commits(store)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, delivery_id in enumerate(ids, 1):
        store.record(make_delivery(delivery_id), PLAN)
        assert commits[0] == n  # committed before record() returned, no batch awaited
    assert all(store.get_delivery(delivery_id) is not None for delivery_id in ids)


class Interrupt(BaseException):
    """Like KeyboardInterrupt or a worker's hard time limit, raised inside the leader."""


def test_an_interrupted_leader_hands_the_queued_writes_on(store: DeliveryStore) -> None:
    entered, release = threading.Event(), threading.Event()
    raised: list[BaseException] = []

    def interrupted(conn: Connection) -> None:
        entered.set()
        release.wait(10)
        raise Interrupt()

    def lead() -> None:
        try:
            store._write(interrupted)
        except Interrupt as exc:
            raised.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    assert entered.wait(10)
    deliveries = [make_delivery() for _ in range(5)]
    threads = [threading.Thread(target=store.record, args=(d, PLAN)) for d in deliveries]
    for t in threads:
        t.start()
    wait_queued(store, 5)
    release.set()
    for t in [leader, *threads]:
        t.join(10)
        assert not t.is_alive(), "a queued write was never committed"
    assert len(raised) == 1
    assert store.counts()[RunState.RECEIVED] == 5


def test_when_the_database_fails_the_whole_batch_fails_at_once(store: DeliveryStore) -> None:
    """No retry one write at a time: each would only wait out the same failure."""
    attempts = [0]
    outcomes: list[object] = []

    def locked(conn: Connection) -> None:
        attempts[0] += 1
        raise OperationalError("UPDATE x", {}, sqlite3.OperationalError("database is locked"))

    def run() -> None:
        try:
            store._write(locked)
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    run_queued(store, threads)
    assert len(outcomes) == 4 and all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert attempts[0] == 1  # one batch, no retries
