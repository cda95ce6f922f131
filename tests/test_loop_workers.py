"""The per-process event loop (ghapp_celery.tasks.loop) inside real Celery workers.

These tests start ``celery worker`` subprocesses (tests/_workers.py) on kombu's SQLAlchemy
transport over a WAL-mode SQLite file, with the SQLite result backend carrying what each
handler observed. Assertions are about structure (pids, loop ids, concurrency, exception types),
never wall-clock speed. The loop in process: tests/test_loop.py.
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from ghapp_celery.tasks.loop import (
    HandlerTimeout,
)
from tests._workers import CeleryWorker, sqlite_backend_url, sqlite_broker_url
from tests.loopapp import LoopAppError

APP = "tests.loopapp:celery_app"
GET = {"timeout": 60, "interval": 0.05}


# -- real workers -------------------------------------------------------------------------------


class Broker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = sqlite_broker_url(root / "broker.sqlite")
        self.backend = sqlite_backend_url(root / "results.sqlite")
        self.client = Celery("loop-client", set_as_current=False)
        self.client.conf.update(
            broker_url=self.url,
            result_backend=self.backend,
            broker_transport_options={"connect_args": {"timeout": 30}},
            database_engine_options={"connect_args": {"timeout": 30}},
        )
        # Create the result tables here, once, so pool processes don't race to create them.
        self.client.backend.ResultSession().close()
        self.workers: dict[tuple[str, int], CeleryWorker] = {}

    def worker(self, pool: Any, concurrency: int) -> CeleryWorker:
        """A running worker for (pool, concurrency), started on first use, own queue and dir."""
        key = (pool, concurrency)
        current = self.workers.get(key)
        if current is not None and current.proc is not None and current.proc.poll() is None:
            return current
        tag = f"{pool}{concurrency}-{uuid.uuid4().hex[:6]}"
        workdir = self.root / tag
        workdir.mkdir()
        worker = CeleryWorker(
            APP,
            self.url,
            workdir,
            pool=pool,
            concurrency=concurrency,
            queue=f"q-{tag}",
            result_backend=self.backend,
            # PRESTART: the main process starts a loop before forking (see loopapp).
            env={"LOOPAPP_DIR": str(workdir), "LOOPAPP_PRESTART": "1"},
        )
        self.workers[key] = worker
        worker.start()
        try:
            return worker.wait_ready()
        except BaseException:
            worker.stop(timeout=5)
            raise

    def send(self, worker: CeleryWorker, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.client.send_task(name, args=args, kwargs=kwargs, queue=worker.queue)

    def stop_all(self) -> None:
        # In parallel: each warm shutdown waits out the worker's 2 s broker poll.
        running = [w for w in self.workers.values() if w.proc and w.proc.poll() is None]
        with ThreadPoolExecutor(max(1, len(running))) as pool:
            list(pool.map(lambda w: w.stop(), running))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if sys.platform != "linux":
        pytest.skip("worker tests read /proc")
    b = Broker(tmp_path_factory.mktemp("loop-workers"))
    yield b
    b.stop_all()


POOLS = [("prefork", 2), ("solo", 1), ("threads", 8)]


@pytest.mark.parametrize(("pool", "concurrency"), POOLS)
def test_async_handler_returns_its_value_on_each_pool(
    broker: Broker, pool: str, concurrency: int
) -> None:
    worker = broker.worker(pool, concurrency)
    results = [broker.send(worker, "loop.echo", i).get(**GET) for i in range(6)]
    assert [r["value"] for r in results] == list(range(6))
    for i, r in enumerate(results):
        assert r["on_loop_thread"], r
        assert r["loop_pid"] == r["pid"], r
        # The contextvar set in the task thread is visible to the coroutine on the loop.
        assert r["request"] == f"request-{i}", r
    if pool != "prefork":
        assert {r["pid"] for r in results} == {worker.pid}
        assert len({r["loop_id"] for r in results}) == 1


@pytest.mark.parametrize(("pool", "concurrency"), POOLS)
def test_handler_exception_keeps_its_type(broker: Broker, pool: str, concurrency: int) -> None:
    worker = broker.worker(pool, concurrency)
    with pytest.raises(LoopAppError, match="kept its type") as info:
        broker.send(worker, "loop.fail", "kept its type").get(**GET)
    assert type(info.value) is LoopAppError


def test_prefork_child_creates_its_loop_after_fork(broker: Broker) -> None:
    worker = broker.worker("prefork", 2)
    children = set(worker.child_pids())
    results = [broker.send(worker, "loop.echo", i).get(**GET) for i in range(6)]
    for r in results:
        assert r["pid"] != worker.pid and r["ppid"] == worker.pid, r
        assert r["pid"] in children, (r, children)
        # The loop was stamped by the child, not inherited from the (pre-started) parent,
        # and its thread exists in the child's own /proc/<pid>/task.
        assert r["loop_pid"] == r["pid"] and r["loop_thread_here"], r


def test_soft_time_limit_on_prefork_cancels_the_coroutine(broker: Broker) -> None:
    worker = broker.worker("prefork", 2)
    with pytest.raises(SoftTimeLimitExceeded):
        broker.send(worker, "loop.soft_limited", 30, "soft").get(**GET)
    _wait_for_line(Path(worker.log_file).parent / "cancelled.log", "soft")


def test_timeout_on_threads_pool_raises_handler_timeout(broker: Broker) -> None:
    worker = broker.worker("threads", 8)
    started = time.monotonic()
    with pytest.raises(HandlerTimeout):
        broker.send(worker, "loop.slow", 5, "threads-timeout", timeout=0.2).get(**GET)
    # Only "not the full 5 s sleep": the point is that it was cut short, not how fast.
    assert time.monotonic() - started < 5
    _wait_for_line(Path(worker.log_file).parent / "cancelled.log", "threads-timeout")
    assert broker.send(worker, "loop.slow", 0, "quick", timeout=5).get(**GET) == "finished"


def test_twenty_handlers_await_at_once_on_one_loop(broker: Broker) -> None:
    worker = broker.worker("threads", 20)
    group = uuid.uuid4().hex
    sent = [broker.send(worker, "loop.gather", group, 20, 0.5) for _ in range(20)]
    results = [r.get(**GET) for r in sent]
    assert {r["pid"] for r in results} == {worker.pid}
    assert len({r["loop_id"] for r in results}) == 1, "one loop per process, not per thread"
    assert max(r["max_active"] for r in results) == 20
    assert _max_overlap([(r["start"], r["end"]) for r in results]) == 20


@pytest.mark.parametrize(("pool", "concurrency"), [("prefork", 2), ("threads", 8)])
def test_resource_once_per_process_and_closed_at_shutdown(
    broker: Broker, pool: str, concurrency: int
) -> None:
    worker = broker.worker(pool, concurrency)
    results = [broker.send(worker, "loop.use_client").get(**GET) for _ in range(8)]
    by_pid: dict[int, set[int]] = {}
    for r in results:
        assert not r["closed"]
        assert r["client_id_from_task_thread"] == r["client_id"]
        by_pid.setdefault(r["pid"], set()).add(r["client_id"])
    assert all(len(ids) == 1 for ids in by_pid.values()), by_pid

    assert worker.stop() == 0  # warm shutdown: worker_process_shutdown / worker_shutdown
    log = (Path(worker.log_file).parent / "resources.log").read_text().splitlines()
    created = [int(line.split()[1]) for line in log if line.startswith("created")]
    closed = [int(line.split()[1]) for line in log if line.startswith("closed")]
    assert all(line.endswith("True") for line in log if line.startswith("closed")), log
    # One client per process (the pre-started main process counts as one), each closed once.
    assert sorted(created) == sorted(set(created)), log
    assert set(by_pid) <= set(created), (by_pid, log)
    assert sorted(closed) == sorted(created), log


def _wait_for_line(path: Path, line: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and line in path.read_text().splitlines():
            return
        time.sleep(0.05)
    raise AssertionError(f"{line!r} never appeared in {path}")


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    active = best = 0
    for _, step in edges:
        active += step
        best = max(best, active)
    return best


def test_worker_helper_kill_whole_group_leaves_no_process(broker: Broker) -> None:
    """The crash tests rely on this: SIGKILL to the group takes the pool children with it."""
    worker = broker.worker("prefork", 1)
    assert broker.send(worker, "loop.echo", "alive").get(**GET)["value"] == "alive"
    children = worker.child_pids()
    assert children
    worker.kill(signal.SIGKILL, whole_group=True)
    assert worker.stop(timeout=10) == -signal.SIGKILL
    for pid in [worker.pid, *children]:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid), pid


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
