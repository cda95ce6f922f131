"""The processes of one deployment, started for real, that a fault test kills and restarts.

A :class:`Deployment` is what docs/production.md runs, on loopback: one web process
(``python -m uvicorn tests.faults.faultapp:web``, a subprocess so it can be SIGKILLed), N
Celery workers (tests/_workers.CeleryWorker, threads pool), one ``celery beat`` running the
sweeper every ``SWEEP_INTERVAL`` seconds, on a broker (redis-server or the embedded SQLite
broker) and a store (PostgreSQL or SQLite) that the test provides. Every process writes its
stdout and stderr to its own file under ``<tmp>/logs``, which the log checks read.

The harness keeps the facts the invariant checks need from the outside: which pids it killed
and when they were dead (a journaled execution that never ended must belong to one of them,
and ends at that moment), and which processes exited without being killed (a worker that
dies on a broker restart is a finding of its own).

The settings make every recovery path fit in seconds (see the constants below); the lease
is longer than the longest store stall a test injects plus a renewal period, so the runs'
documented guarantee (at most one execution at a time while a renewal lands once per lease)
applies to every fault here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from ghapp_celery.store import DeliveryStore, StoreUnavailable
from tests._redis import free_port
from tests._workers import REPO_ROOT, CeleryWorker

SECRET = "faults-secret"
APP = "tests.faults.faultapp"
QUEUES = "github.default,github.issues"

#: What the intake must answer within (GITHUBAPP_WEBHOOK_DEADLINE), and the slack allowed on
#: top of it for the HTTP round trip on a loaded 2-core machine.
DEADLINE = 3.0
MARGIN = 1.0
#: A run's lease. Longer than the longest stall injected (5 s) plus a renewal period (a third
#: of the lease): a renewal waiting out the stall still commits within one lease.
LEASE = 10.0
SWEEP_INTERVAL = 1.0
UNPUBLISHED_AFTER = 1.0
QUEUED_AFTER = 4.0
HANDLER_SECONDS = 1.0
OUTCOME_WRITE_TIMEOUT = 30.0
#: A killed worker's run is back within a lease and a sweep; a lost message within
#: QUEUED_AFTER and a sweep. Twice the longest of those, for a busy machine.
RECOVERY = 2 * (LEASE + QUEUED_AFTER + 2 * SWEEP_INTERVAL)

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, step: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the ")" closing the command: state, ppid, pgrp.
        if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
            pids.append(int(entry.name))
    return pids


class Process:
    """One subprocess in its own session, its output in ``log_file``."""

    def __init__(self, name: str, command: list[str], env: Mapping[str, str], log_file: Path):
        self.name = name
        self.command = command
        self.env = dict(env)
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> tuple[list[int], float]:
        """SIGKILL the whole process group; returns its pids and when all were dead."""
        pids = _group_pids(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)
        wait_until(lambda: not any(_pid_alive(p) for p in pids), 10, f"{self.name} to die")
        return pids, time.time()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL of the group after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # anything left in the group

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"


@dataclass
class Kill:
    """A process the test SIGKILLed: its pids, and when every one of them was dead."""

    name: str
    pids: list[int]
    dead_at: float


@dataclass
class Deployment:
    """Web, workers and beat of one app on ``broker_url`` and ``store_url``; see the module."""

    tmp: Path
    broker_url: str
    store_url: str
    workers: int = 2
    concurrency: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = self.tmp / "logs"
        self.state = self.tmp / "state"
        self.journal = self.state / "journal"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env: dict[str, str] = {
            "CELERY_BROKER_URL": self.broker_url,
            "GITHUBAPP_DATABASE_URL": self.store_url,
            "GITHUBAPP_DATA_DIR": str(self.tmp / "data"),
            "GITHUBAPP_WEBHOOK_SECRET": SECRET,
            "GITHUBAPP_WEBHOOK_DEADLINE": str(DEADLINE),
            "GITHUBAPP_RUN_LEASE": str(LEASE),
            "GITHUBAPP_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
            "GITHUBAPP_SWEEP_UNPUBLISHED_AFTER": str(UNPUBLISHED_AFTER),
            "GITHUBAPP_SWEEP_QUEUED_AFTER": str(QUEUED_AFTER),
            "GITHUBAPP_OUTCOME_WRITE_TIMEOUT": str(OUTCOME_WRITE_TIMEOUT),
            "GHAPP_TEST_STATE_DIR": str(self.state),
            "GHAPP_TEST_HANDLER_SECONDS": str(HANDLER_SECONDS),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        self.worker_procs: list[CeleryWorker] = []
        self.web_procs: list[Process] = []
        self.beat: Process | None = None
        self.kills: list[Kill] = []
        self._stopped: set[int] = set()  # pids stopped on purpose (stop_*)
        self.store = DeliveryStore(self.store_url)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Deployment:
        # Migrated once, before any process starts, so none of them races to do it.
        self.store.upgrade()
        self.state.mkdir(parents=True, exist_ok=True)
        workers = [self._new_worker() for _ in range(self.workers)]
        for worker in workers:
            worker.start()
        self.beat = Process(
            "beat",
            [
                sys.executable, "-m", "celery", "-A", f"{APP}:celery", "beat",
                "--schedule", str(self.tmp / "celerybeat-schedule"),
                "--loglevel=WARNING",
            ],
            self.env,
            self.logs / "beat.log",
        ).start()  # fmt: skip
        self.start_web()
        for worker in workers:
            worker.wait_ready()
        return self

    def _new_worker(self) -> CeleryWorker:
        worker = CeleryWorker(
            f"{APP}:celery",
            self.broker_url,
            self.logs,
            pool="threads",
            concurrency=self.concurrency,
            queue=QUEUES,
            env=self.env,
            name=f"worker{len(self.worker_procs) + 1}",
        )
        self.worker_procs.append(worker)
        return worker

    def add_worker(self) -> CeleryWorker:
        worker = self._new_worker()
        worker.start()
        return worker.wait_ready()

    def start_web(self) -> Process:
        n = len(self.web_procs) + 1
        web = Process(
            f"web{n}",
            [
                sys.executable, "-m", "uvicorn", f"{APP}:web",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning", "--no-access-log", "--lifespan", "on",
            ],
            self.env,
            self.logs / f"web{n}.log",
        ).start()  # fmt: skip
        self.web_procs.append(web)

        def serving() -> bool:
            if not web.running():
                raise AssertionError(f"web exited at start:\n{web.log_tail()}")
            try:
                return httpx.get(f"{self.url}/faults/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(serving, 30, "the web process to serve", step=0.05)
        return web

    @property
    def web(self) -> Process:
        return self.web_procs[-1]

    def kill_web(self) -> Kill:
        pids, dead_at = self.web.kill()
        kill = Kill(self.web.name, pids, dead_at)
        self.kills.append(kill)
        return kill

    def stop_web(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the web process, as an orchestrator stops it; its exit code (None: it had
        to be SIGKILLed after ``timeout``)."""
        web = self.web
        self._stopped.add(web.pid)
        web.stop(timeout)
        assert web.proc is not None
        return None if web.proc.returncode == -9 else web.proc.returncode

    def stop_worker(self, worker: CeleryWorker, timeout: float = 30.0) -> int:
        """SIGTERM a worker (a warm shutdown); its exit code."""
        assert worker.proc is not None
        self._stopped.add(worker.proc.pid)
        return worker.stop(timeout=timeout)

    def kill_worker(self, worker: CeleryWorker) -> Kill:
        proc = worker.proc
        assert proc is not None
        pids = _group_pids(proc.pid)
        worker.kill(signal.SIGKILL, whole_group=True)
        proc.wait(10)
        wait_until(lambda: not any(_pid_alive(p) for p in pids), 10, "the worker to die")
        kill = Kill(worker.nodename, pids, time.time())
        self.kills.append(kill)
        return kill

    def killed_pids(self) -> dict[int, float]:
        return {pid: kill.dead_at for kill in self.kills for pid in kill.pids}

    def processes(self) -> list[tuple[str, subprocess.Popen[bytes] | None]]:
        procs: list[tuple[str, subprocess.Popen[bytes] | None]] = [
            (w.nodename, w.proc) for w in self.worker_procs
        ]
        procs += [(w.name, w.proc) for w in self.web_procs]
        if self.beat is not None:
            procs.append(("beat", self.beat.proc))
        return procs

    def unexpected_exits(self) -> list[str]:
        """Processes that exited although nobody killed or stopped them."""
        killed = self.killed_pids()
        return [
            f"{name} (pid {proc.pid}) exited with {proc.returncode}"
            for name, proc in self.processes()
            if proc is not None
            and proc.poll() is not None
            and proc.pid not in killed
            and proc.pid not in self._stopped
        ]

    def stop(self) -> list[str]:
        """Stop everything gracefully (running handlers finish); returns unexpected exits
        noticed just before."""
        exits = self.unexpected_exits()
        for web in self.web_procs:
            if web.running():
                self._stopped.add(web.pid)
            web.stop()
        if self.beat is not None:
            if self.beat.running():
                self._stopped.add(self.beat.pid)
            self.beat.stop()
        for worker in self.worker_procs:
            if worker.proc is not None and worker.proc.poll() is None:
                self._stopped.add(worker.proc.pid)
                worker.stop(timeout=30)
        self.store.dispose()
        return exits

    # -- the store, from the outside ------------------------------------------------------

    def run_counts(self) -> dict[str, int] | None:
        try:
            return self.store.counts()
        except StoreUnavailable:
            return None

    def settled(self) -> bool:
        """Every run in the store succeeded (and there is at least one)."""
        counts = self.run_counts()
        if counts is None:
            return False
        return counts.get("succeeded", 0) > 0 and all(
            n == 0 for state, n in counts.items() if state != "succeeded"
        )

    def wait_settled(self, timeout: float = RECOVERY) -> bool:
        """Wait for every run to succeed; False (not an error: the checks report it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.settled():
                return True
            time.sleep(0.25)
        return False

    def log_files(self) -> list[Path]:
        return sorted(self.logs.glob("*.log"))

    # -- the journal -----------------------------------------------------------------------

    def open_executions(self, pid: int | None = None) -> list[str]:
        """Run ids whose handler is executing now (journaled start, no end), in ``pid``."""
        if not self.journal.exists():
            return []
        running: dict[tuple[str, str], None] = {}
        for line in self.journal.read_text().splitlines():
            kind, run_id, executor, _ = line.split()
            if kind == "start":
                running[(run_id, executor)] = None
            else:
                running.pop((run_id, executor), None)
        return [
            run_id
            for run_id, executor in running
            if pid is None or executor.split("/", 1)[0] == str(pid)
        ]

    def warm_up(self, succeeded: int = 5, timeout: float = 60) -> None:
        """Wait until ``succeeded`` runs went all the way through: the deployment works."""

        def enough() -> bool:
            counts = self.run_counts()
            return counts is not None and counts.get("succeeded", 0) >= succeeded

        wait_until(enough, timeout, f"{succeeded} runs to succeed before the fault")


@contextlib.contextmanager
def deployment(tmp: Path, broker_url: str, store_url: str) -> Iterator[Deployment]:
    """A started Deployment, stopped (and its processes reaped) however the block ends."""
    deploy = Deployment(tmp, broker_url, store_url)
    try:
        yield deploy.start()
    finally:
        deploy.stop()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"
