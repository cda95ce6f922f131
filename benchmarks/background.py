"""Background handlers end to end: webhook -> store -> broker -> Celery worker -> store.

Everything runs on this host, the load generator included: uvicorn (one process) serving
``benchmarks/bgbench_app.py``, real ``celery worker`` subprocesses, a redis-server of our own
on a free loopback port (or the embedded SQLite broker), the SQLite store in a temporary
GITHUBAPP_DATA_DIR and, for the I/O scenario, FakeGitHub in its own process with 50 ms latency.

    .venv/bin/python benchmarks/background.py            # full run (< 10 min), writes the doc
    .venv/bin/python benchmarks/background.py --quick    # smoke run (< 1 min), prints only

Scenarios: (1) deliveries/s from the first post until the store shows every run succeeded,
no-op handler, Redis and SQLite brokers; (2) handler runs/s of an async handler awaiting a
50 ms GitHub call, threads pool against prefork; (3) the 202's latency and throughput against
the same app's inline no-op; (4) RSS per worker process; (5) deliveries while worker groups
are SIGKILLed, with the sweeper running: nothing lost, every run succeeded. Scenarios 1-4 also
run ``benchmarks/bgbench_bare_app.py`` (FastAPI + Celery by hand, nothing recorded) as the
stack's floor on this host.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from bgbench_load import Load, post_deliveries
from intake_report import machine

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(ROOT))  # a checkout without an editable install works too

from ghapp_celery.store import DeliveryStore  # noqa: E402
from ghapp_celery.store.models import runs as runs_table  # noqa: E402
from ghapp_celery.tasks.celery_app import embedded_broker_url  # noqa: E402
from ghapp_celery.webhooks import webhook_headers  # noqa: E402
from tests._workers import CeleryWorker  # noqa: E402

PAYLOAD = ROOT / "tests" / "fixtures" / "webhooks" / "issues" / "opened.json"
DOC = ROOT / "docs" / "performance.md"
SECRET = "benchmark-secret"
ROUTE = "/webhooks/github/"
QUEUES = "github.issues,github.default"
APP_ID = 12345  # FakeGitHub's default app id
INSTALLATION_ID = 40_000_001  # FakeGitHub's first installation
GITHUB_LATENCY = 0.05
UVICORN_FLAGS = [
    "--host", "127.0.0.1", "--workers", "1", "--loop", "asyncio", "--http", "h11",
    "--log-level", "warning", "--no-access-log",
]  # fmt: skip
START, END = "<!-- background:start -->", "<!-- background:end -->"
HEADING = "## Background handlers"


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(url, timeout=1)
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def redis_server(workdir: Path, pids: dict[str, list[int]] | None = None) -> Iterator[str]:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(workdir)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if pids is not None:
        pids["redis-server"] = [proc.pid]
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)


@contextlib.contextmanager
def fake_github(key_file: Path, pids: dict[str, list[int]] | None = None) -> Iterator[str]:
    """FakeGitHub with 50 ms latency on every call, in its own process (its own GIL)."""
    port = free_port()
    command = [sys.executable, __file__, "--serve-fake-github", str(port), str(key_file)]
    proc = subprocess.Popen(command, cwd=ROOT)
    if pids is not None:
        pids["FakeGitHub"] = [proc.pid]
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc, "FakeGitHub")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def serve_fake_github(port: int, key_file: Path) -> None:
    import uvicorn

    from ghapp_celery.testing import FakeGitHub

    fake = FakeGitHub(
        private_key_pem=key_file.read_text(),
        latency=GITHUB_LATENCY,
        rate_limit=10**9,
        installations=1,
    )
    fake.requests = _Discard()  # no request log: memory stays flat
    uvicorn.run(fake.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class _Discard(list[Any]):
    def append(self, item: Any) -> None:
        pass


@contextlib.contextmanager
def web_server(
    env: dict[str, str], pids: dict[str, list[int]] | None = None, app: str = "bgbench_app:web"
) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(BENCH)]
    proc = subprocess.Popen([*command, *UVICORN_FLAGS, "--port", str(port)], env=env, cwd=ROOT)
    if pids is not None:
        pids["web"] = [proc.pid]
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc, "uvicorn")
        yield f"http://127.0.0.1:{port}{ROUTE}"
    finally:
        _stop(proc)


@dataclass(frozen=True)
class Pool:
    pool: str  # "threads" or "prefork"
    concurrency: int

    def __str__(self) -> str:
        return f"-P {self.pool} -c {self.concurrency}"


def worker(
    env: dict[str, str], workdir: Path, pool: Pool, name: str, app: str = "bgbench_app:celery"
) -> CeleryWorker:
    return CeleryWorker(
        app,
        env["CELERY_BROKER_URL"],
        workdir,
        pool=pool.pool,  # type: ignore[arg-type]
        concurrency=pool.concurrency,
        queue=QUEUES,
        env=env | {"PYTHONPATH": str(BENCH)},
        name=name,
    )


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time these processes have used so far (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def rss_mb(w: CeleryWorker, key: str = "VmRSS:", source: str = "status") -> list[tuple[str, float]]:
    """VmRSS of the worker's main process and of each pool child, in MB."""
    out = []
    for role, pid in [("main", w.pid)] + [("child", p) for p in sorted(w.child_pids())]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
                if line.startswith(key):
                    out.append((role, int(line.split()[1]) / 1024))
    return out


def pss_mb(w: CeleryWorker) -> list[tuple[str, float]]:
    """Proportional set size: pages shared with other processes (a prefork child's with its
    parent, after fork) counted in shares, so the sum is what the group really holds."""
    return rss_mb(w, "Pss:", "smaps_rollup")


# --- the environment and the delivery ---------------------------------------------------------


def environment(data_dir: Path, broker: str | None, handler: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUBAPP_", "CELERY_", "BGBENCH_"))
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    env |= {
        "GITHUBAPP_DATA_DIR": str(data_dir),
        "GITHUBAPP_WEBHOOK_SECRET": SECRET,
        "GITHUBAPP_ID": str(APP_ID),
        # No GitHub calls without FakeGitHub, but the start-up check wants whole credentials.
        "GITHUBAPP_PRIVATE_KEY_PATH": str(app_key(data_dir.parent)),
        "BGBENCH_HANDLER": handler,
        **extra,
    }
    if broker is not None:
        env["CELERY_BROKER_URL"] = broker
    else:  # the embedded broker: GitHubApp derives it from the data dir
        env["CELERY_BROKER_URL"] = embedded_broker_url(data_dir)
    return env


def delivery(action: str) -> tuple[bytes, dict[str, str]]:
    payload = json.loads(PAYLOAD.read_bytes())
    payload["action"] = action
    payload["installation"] = {"id": INSTALLATION_ID, "node_id": "MDIzOkludGVncmF0aW9uNDAwMDAwMDE="}
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, webhook_headers("issues", body, secret=SECRET, app_id=APP_ID)


# --- reading the store -----------------------------------------------------------------------


def store_of(env: dict[str, str]) -> DeliveryStore:
    return DeliveryStore(f"sqlite:///{Path(env['GITHUBAPP_DATA_DIR']).resolve() / 'store.sqlite'}")


def wait_succeeded(store: DeliveryStore, total: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = store.counts()
        if counts["failed"] or counts["dead"]:
            raise RuntimeError(f"runs failed: {counts}")
        if counts["succeeded"] >= total:
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {counts} of {total} after {timeout} s")
        time.sleep(0.05)


def window(store: DeliveryStore, since_wall: float) -> tuple[int, float, float]:
    """Runs created since ``since_wall``: count, first started_at, last finished_at (epoch)."""
    from sqlalchemy import func, select

    since = datetime.fromtimestamp(since_wall, UTC)
    stmt = select(
        func.count(), func.min(runs_table.c.started_at), func.max(runs_table.c.finished_at)
    ).where(runs_table.c.created_at >= since)
    with store._engine.connect() as conn:  # a read the store has no method for
        count, first, last = conn.execute(stmt).one()
    return int(count), _epoch(first), _epoch(last)


def _epoch(value: Any) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def attempts_over_one(store: DeliveryStore) -> int:
    from sqlalchemy import func, select

    with store._engine.connect() as conn:
        stmt = select(func.count()).where(runs_table.c.attempts > 1)
        return int(conn.execute(stmt).scalar_one())


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# --- scenarios -------------------------------------------------------------------------------


@dataclass
class Throughput:
    name: str
    broker: str
    pool: Pool
    handler: str
    deliveries: int
    concurrency: int
    workers: int = 1  # worker processes, each with ``pool``
    post: Load | None = None
    # CPU ms per delivery over the timed posts and drain, by process (the load generator's
    # from its own process time while posting).
    cpu_ms: dict[str, float] = field(default_factory=dict)
    e2e_seconds: float = 0.0
    drain_seconds: float = 0.0
    rss: list[tuple[str, float]] = field(default_factory=list)
    pss: list[tuple[str, float]] = field(default_factory=list)
    #: More environment for the web process and the workers (benchmarks/observability.py).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def e2e_rate(self) -> float:
        return self.deliveries / self.e2e_seconds

    @property
    def drain_rate(self) -> float:
        return self.deliveries / self.drain_seconds


def app_key(tmp: Path) -> Path:
    """A private key for the app's credentials, made once per run."""
    path = tmp / "bench-app.pem"
    if not path.exists():
        from ghapp_celery.testing import make_private_key

        path.write_text(make_private_key())
    return path


def throughput(t: Throughput, tmp: Path, warmup: int, key_file: Path | None = None) -> Throughput:
    """Post ``t.deliveries`` with the workers running; time first post -> last run succeeded."""
    data = tmp / f"{t.name}-data"
    with contextlib.ExitStack() as stack:
        broker = None
        pids: dict[str, list[int]] = {}
        if t.broker == "redis":
            broker = stack.enter_context(redis_server(tmp / f"{t.name}-redis", pids))
        extra = {}
        if key_file is not None:
            github = stack.enter_context(fake_github(key_file, pids))
            extra = {"GITHUBAPP_URL": github, "GITHUBAPP_PRIVATE_KEY_PATH": str(key_file)}
        env = environment(data, broker, t.handler, **extra, **t.env)
        store = store_of(env)
        store.upgrade()
        url = stack.enter_context(web_server(env, pids))
        ws = [
            stack.enter_context(worker(env, tmp / f"{t.name}-workers{n}", t.pool, f"{t.name}{n}"))
            for n in range(t.workers)
        ]
        w = ws[0]
        body, headers = delivery("opened")
        # Warm-up: worker threads, connection pools, the installation token, SQLite caches.
        post_deliveries(url, body, headers, concurrency=t.concurrency, requests=warmup)
        wait_succeeded(store, warmup, timeout=120)
        pids["workers"] = [p for x in ws for p in [x.pid, *x.child_pids()]]
        before = {name: cpu_seconds(group) for name, group in pids.items()}
        t.post = post_deliveries(
            url, body, headers, concurrency=t.concurrency, requests=t.deliveries
        )
        wait_succeeded(store, warmup + t.deliveries, timeout=600)
        for name, group in pids.items():
            t.cpu_ms[name] = (cpu_seconds(group) - before[name]) * 1000 / t.deliveries
        t.cpu_ms["load generator"] = t.post.client_cpu * t.post.seconds * 1000 / t.deliveries
        count, first_started, last_finished = window(store, t.post.started_wall)
        assert count == t.deliveries, (count, t.deliveries)
        t.e2e_seconds = last_finished - t.post.started_wall
        t.drain_seconds = last_finished - first_started
        t.rss = rss_mb(w)
        t.pss = pss_mb(w)
        store.dispose()
    print(
        f"  {t.name:<22} {t.broker:<7} {t.workers} x {t.pool!s:<16} {t.deliveries} deliveries:"
        f" e2e {t.e2e_rate:7.1f}/s  drain {t.drain_rate:7.1f}/s"
        f"  posts {t.post.rps:7.1f}/s  p50 {pct(t.post.latencies_ms, 50):6.1f} ms"
        f"  p99 {pct(t.post.latencies_ms, 99):6.1f} ms  RSS {fmt_rss(t.rss)}"
        f"  CPU ms/delivery {' '.join(f'{k}={v:.2f}' for k, v in t.cpu_ms.items())}",
        flush=True,
    )
    return t


BARE_APP = "bgbench_bare_app"


def wait_broker_drained(broker: str, timeout: float) -> float:
    """Wait until the bare stack's Redis holds no message, queued or unacknowledged (acks are
    late: a message leaves kombu's ``unacked`` hash once its task returned); the wall time it
    was first seen so. Polled every 50 ms, as ``wait_succeeded`` polls the store for ours, so
    the end is at most 50 ms late (under 1% of a run); it must be seen twice in a row, which
    rules out the instant between a BRPOP and kombu's recording the message as unacked."""
    import redis

    client = redis.Redis.from_url(broker)
    try:
        deadline = time.monotonic() + timeout
        empty_since = None
        while time.monotonic() < deadline:
            pipe = client.pipeline()
            pipe.llen("github.issues")
            pipe.hlen("unacked")
            queued, unacked = pipe.execute()
            if queued == 0 and unacked == 0:
                if empty_since is not None:
                    return empty_since
                empty_since = time.time()
            else:
                empty_since = None
            time.sleep(0.05)
        raise TimeoutError("the bare stack's queue did not drain")
    finally:
        client.close()


def assert_no_failed_tasks(w: CeleryWorker) -> None:
    """The bare stack keeps no record of its runs: a task that raised shows only in the
    worker's log (Celery logs it at ERROR), and voids the run."""
    log = w.log_file.read_text(errors="replace")
    assert "ERROR" not in log and "Traceback" not in log, log[-2000:]


def bare_throughput(
    t: Throughput, tmp: Path, warmup: int, key_file: Path | None = None
) -> Throughput:
    """``throughput`` for ``bgbench_bare_app``: the stack without ghapp_celery, Redis only;
    done when Redis holds no message (there is no store to ask)."""
    with contextlib.ExitStack() as stack:
        pids: dict[str, list[int]] = {}
        broker = stack.enter_context(redis_server(tmp / f"{t.name}-redis", pids))
        extra = {}
        if key_file is not None:
            github = stack.enter_context(fake_github(key_file, pids))
            extra = {"GITHUBAPP_URL": github, "GITHUBAPP_PRIVATE_KEY_PATH": str(key_file)}
        env = environment(tmp / f"{t.name}-data", broker, t.handler, **extra)
        url = stack.enter_context(web_server(env, pids, app=f"{BARE_APP}:web"))
        w = stack.enter_context(
            worker(env, tmp / f"{t.name}-workers", t.pool, t.name, app=f"{BARE_APP}:celery")
        )
        body, headers = delivery("opened")
        post_deliveries(url, body, headers, concurrency=t.concurrency, requests=warmup)
        wait_broker_drained(broker, timeout=120)
        pids["workers"] = [w.pid, *w.child_pids()]
        before = {name: cpu_seconds(group) for name, group in pids.items()}
        t.post = post_deliveries(
            url, body, headers, concurrency=t.concurrency, requests=t.deliveries
        )
        done = wait_broker_drained(broker, timeout=600)
        assert_no_failed_tasks(w)
        for name, group in pids.items():
            t.cpu_ms[name] = (cpu_seconds(group) - before[name]) * 1000 / t.deliveries
        t.cpu_ms["load generator"] = t.post.client_cpu * t.post.seconds * 1000 / t.deliveries
        t.e2e_seconds = t.drain_seconds = done - t.post.started_wall
        t.rss = rss_mb(w)
        t.pss = pss_mb(w)
    print(
        f"  {t.name:<22} {t.broker:<7} {t.workers} x {t.pool!s:<16} {t.deliveries} deliveries:"
        f" e2e {t.e2e_rate:7.1f}/s  posts {t.post.rps:7.1f}/s"
        f"  p50 {pct(t.post.latencies_ms, 50):6.1f} ms  p99 {pct(t.post.latencies_ms, 99):6.1f} ms"
        f"  RSS {fmt_rss(t.rss)}"
        f"  CPU ms/delivery {' '.join(f'{k}={v:.2f}' for k, v in t.cpu_ms.items())}",
        flush=True,
    )
    return t


@dataclass
class Ack:
    rounds: int
    requests: int
    concurrency: int
    inline: list[Load] = field(default_factory=list)
    background: list[Load] = field(default_factory=list)
    bare: list[Load] = field(default_factory=list)  # bgbench_bare_app's .delay() route

    def ratios(self, of: str = "background") -> list[float]:
        loads: list[Load] = getattr(self, of)
        return [b.rps / i.rps for b, i in zip(loads, self.inline, strict=True)]


def acknowledgement(tmp: Path, rounds: int, requests: int, concurrency: int) -> Ack:
    """202 answers against the same app's inline no-op, alternating, no worker running.

    No worker: this isolates what the web process does per delivery (record, publish) from
    the CPU a worker on the same two cores takes; scenario 1 reports the 202 latency with
    workers running.
    """
    ack = Ack(rounds, requests, concurrency)
    with redis_server(tmp / "ack-redis") as broker:
        env = environment(tmp / "ack-data", broker, "noop")
        store_of(env).upgrade()
        with web_server(env) as url, web_server(env, app=f"{BARE_APP}:web") as bare_url:
            bg, bg_headers = delivery("opened")
            inline, inline_headers = delivery("edited")
            runs = {
                "inline": (url, inline, inline_headers, 200, b'"HIT"', ack.inline),
                "background": (url, bg, bg_headers, 202, b'"QUEUED"', ack.background),
                "bare": (bare_url, bg, bg_headers, 202, b'"QUEUED"', ack.bare),
            }
            for kind in runs:  # warm-up every path
                target, body, headers, status, expect, _ = runs[kind]
                post_deliveries(target, body, headers, concurrency=concurrency, requests=300,
                                status=status, expect=expect)  # fmt: skip
            kinds = list(runs)
            for n in range(rounds):
                order = kinds[n % 3 :] + kinds[: n % 3]  # each goes first in turn
                for kind in order:
                    target, body, headers, status, expect, into = runs[kind]
                    load = post_deliveries(
                        target,
                        body,
                        headers,
                        concurrency=concurrency,
                        requests=requests,
                        status=status,
                        expect=expect,
                    )
                    into.append(load)
                    print(
                        f"  ack round {n + 1} {kind:<10} {load.rps:7.1f} req/s"
                        f"  p50 {pct(load.latencies_ms, 50):6.1f} ms"
                        f"  p99 {pct(load.latencies_ms, 99):6.1f} ms"
                        f"  client CPU {load.client_cpu:.0%}",
                        flush=True,
                    )
    return ack


@dataclass
class Crash:
    deliveries: int
    kills: int
    pool: Pool
    killed_at: list[int] = field(default_factory=list)  # succeeded count at each kill
    counts: dict[str, int] = field(default_factory=dict)
    stored_deliveries: int = 0
    retried: int = 0
    republished: int = 0
    seconds: float = 0.0
    post: Load | None = None


CRASH_ENV = {
    "GITHUBAPP_HANDLER_TIMEOUT": "5",
    # Leases are renewed while a run executes, so a short one is safe: a killed worker's
    # runs come back within it.
    "GITHUBAPP_RUN_LEASE": "3",
    "GITHUBAPP_VISIBILITY_TIMEOUT": "10",
    "GITHUBAPP_SWEEP_UNPUBLISHED_AFTER": "5",
    # Not in the brief's list, but needed: a message SIGKILL takes out of Redis before kombu
    # records it as unacked leaves its run QUEUED, and only this sweep brings it back (the
    # default is 900 s). Must exceed the longest legitimate wait in the queue.
    "GITHUBAPP_SWEEP_QUEUED_AFTER": "30",
}


def crash(tmp: Path, c: Crash, concurrency: int) -> Crash:
    """Post while the whole worker group is SIGKILLed ``kills`` times; sweep every second."""
    with redis_server(tmp / "crash-redis") as broker:
        env = environment(tmp / "crash-data", broker, "noop", **CRASH_ENV)
        store = store_of(env)
        store.upgrade()
        sweeper_app = in_process_app(env)
        stop = threading.Event()

        def sweep_forever() -> None:
            while not stop.wait(1.0):
                with contextlib.suppress(Exception):
                    c.republished += len(sweeper_app.sweep().republished)

        body, headers = delivery("opened")
        with web_server(env) as url:
            current = worker(env, tmp / "crash-w0", c.pool, "crash0").start().wait_ready()
            sweeper = threading.Thread(target=sweep_forever, daemon=True)
            sweeper.start()
            loads: list[Load] = []
            errors: list[BaseException] = []

            def post() -> None:
                try:
                    loads.append(post_deliveries(url, body, headers, concurrency=concurrency,
                                                 requests=c.deliveries))  # fmt: skip
                except BaseException as exc:
                    errors.append(exc)

            started = time.monotonic()
            poster = threading.Thread(target=post)
            poster.start()
            try:
                for k in range(1, c.kills + 1):
                    # Spaced along the run: after every deliveries/(kills+1) runs succeeded.
                    goal = c.deliveries * k // (c.kills + 1)
                    while store.counts()["succeeded"] < goal:
                        if errors:
                            raise errors[0]
                        time.sleep(0.05)
                    current.kill(signal.SIGKILL, whole_group=True)
                    current.stop(timeout=5)
                    c.killed_at.append(store.counts()["succeeded"])
                    current = worker(env, tmp / f"crash-w{k}", c.pool, f"crash{k}")
                    current.start().wait_ready()
                    print(f"  crash: killed worker {k} at {c.killed_at[-1]} succeeded", flush=True)
                poster.join()
                if errors:
                    raise errors[0]
                c.post = loads[0]
                c.counts = wait_succeeded(store, c.deliveries, timeout=300)
                c.seconds = time.monotonic() - started
                c.counts = store.counts()
                c.stored_deliveries = sum(1 for _ in iter_deliveries(store))
                c.retried = attempts_over_one(store)
            finally:
                stop.set()
                poster.join()
                current.stop(timeout=10)
        store.dispose()
    print(f"  crash: {c.counts} attempts>1: {c.retried} republished: {c.republished}", flush=True)
    return c


def in_process_app(env: dict[str, str]) -> Any:
    """A GitHubApp in this process with the scenario's settings, for ``sweep()``."""
    os.environ.update({k: v for k, v in env.items() if k.startswith(("GITHUBAPP_", "CELERY_"))})
    from ghapp_celery import GitHubApp

    return GitHubApp()


def iter_deliveries(store: DeliveryStore) -> Iterator[Any]:
    cursor = None
    while True:
        page = store.list_deliveries(limit=500, cursor=cursor)
        yield from page.items
        cursor = page.next_cursor
        if not cursor:
            return


# --- the report ------------------------------------------------------------------------------


def fmt_rss(rss: list[tuple[str, float]]) -> str:
    return " + ".join(f"{mb:.0f}" for _, mb in rss) + " MB"


def verdict(ok: bool) -> str:
    return "pass" if ok else "**miss**"


@dataclass
class Results:
    redis: Throughput
    redis2: Throughput
    sqlite: Throughput
    io_threads: Throughput
    io_prefork: Throughput
    ack: Ack
    crash: Crash
    # The same jobs on bgbench_bare_app (FastAPI + Celery, nothing of ours): the stack's floor.
    bare_redis: Throughput
    bare_io: Throughput
    # ours / bare end-to-end rate of each alternating round (redis one worker, io threads).
    redis_ratios: list[float] = field(default_factory=list)
    io_ratios: list[float] = field(default_factory=list)
    elapsed: float = 0.0


def side_by_side(
    ours: Callable[[int], Throughput], bare: Callable[[int], Throughput], rounds: int
) -> tuple[Throughput, Throughput, list[float]]:
    """Alternate ours and the bare stack for ``rounds`` rounds (each goes first in turn);
    the median round of each by end-to-end rate, and each round's ratio ours / bare."""
    pairs = []
    for n in range(rounds):
        if n % 2:
            other = bare(n)
            pairs.append((ours(n), other))
        else:
            mine = ours(n)
            pairs.append((mine, bare(n)))
    ratios = [o.e2e_rate / b.e2e_rate for o, b in pairs]

    def median_run(runs: list[Throughput]) -> Throughput:
        return sorted(runs, key=lambda t: t.e2e_rate)[len(runs) // 2]

    return median_run([o for o, _ in pairs]), median_run([b for _, b in pairs]), ratios


def fmt_ratios(ratios: list[float]) -> str:
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}x"
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


METHOD = """\
Measured {date} by `benchmarks/background.py` (run time {elapsed:.0f} s) on {machine}; a machine
shared with other work. Everything on this host, the load generator included: uvicorn (one
process, `--loop asyncio --http h11`) serving `benchmarks/bgbench_app.py`, real `celery worker`
subprocesses, redis-server {redis} on loopback or the embedded SQLite broker, and the SQLite
store (WAL) in a temporary `GITHUBAPP_DATA_DIR`. Deliveries: the real `issues/opened` payload
with an installation, signed, a fresh delivery id each. Worker flags: the repository's
`celeryconfig.py` (acks late, prefetch 1; task events off, as by default)."""

# What the profiles showed on 2026-11-27 (cProfile of the scheduler and of task.apply in
# process, callgrind-free CPU times). Written by hand: re-check it when the numbers move.
WHERE_THE_TIME_GOES = """\
**The floor: the same job with nothing of ours.** The rows marked *reference* run
`benchmarks/bgbench_bare_app.py` beside ours, on the same host, broker and worker flags: a
FastAPI route that checks the signature, parses the body and calls `.delay()`, and a Celery
task that parses the payload (and, for the I/O row, awaits the same GitHub call on one event
loop per process through one `httpx.AsyncClient`, as DESIGN section 4 wires it by hand). It
records nothing: no delivery row, no run states, no lease, no sweeper. In this day's runs on
this 2-core host (whose load from other work moves every figure by 20% or more) it reached
890-1,040 deliveries/s on Redis, 230-405 I/O runs/s, 0.44-0.69x the inline answer rate, and
its 50-thread I/O worker held 98-100 MB. The targets of 1,000/s, 400/s, 0.8x and 100 MB
therefore sit at or beyond what FastAPI and Celery themselves do here; what this benchmark can
show is how close ours comes to that floor while it also keeps a durable record of every
delivery and run (the last column of each reference row, from rounds run side by side). The
intake answers at 0.9-1.1x the bare route's rate; the I/O worker keeps pace with the bare one
(0.85-1.1x across runs); the no-op worker is where the store's cost shows, since a run that
does nothing is left with only its two store writes (start and finish) against the bare
task's none.

**Where the time went, and what was changed.** The first full run of this benchmark measured
76/s (Redis), 75/s (SQLite), 74/s (I/O handler), acks at 0.08x and 131-137 MB per worker.
Per-process CPU accounting under load (`/proc` times of each process over a run, the table
above) and py-spy/cProfile profiles found most of it in work a single delivery does not need.
Changed since, each with its own commit and measurement:

- *Intake batching.* Requests queue their delivery for two scheduler threads; each takes all
  that is waiting, records it in one transaction (`DeliveryStore.record_many`) and publishes
  it through one kombu producer batch (one pipelined Redis round trip). Web CPU per delivery
  2.2 -> 1.0 ms.
- *Group commit* on SQLite: writes from a process's threads that queue behind a busy writer
  share its next transaction, with one leader at a time and each waiting thread woken once.
- *Cheaper store statements.* Built once (constructing them cost more than running them); a
  run finished by one `UPDATE ... RETURNING`; a delivery's state one pass over its own runs
  (SQLite had answered the old five `EXISTS` by scanning every queued run, so a finish grew
  with the backlog); a worker's start no longer reads the run back; and on SQLite a worker's
  start and finish statements, still compiled by SQLAlchemy, run on the driver's cursor
  (SQLAlchemy's execution layer cost more per statement than SQLite did); and the runs' index
  on the lease is gone (every start and finish moved an entry in it; the sweeper finds the
  runs in flight by state). In process, a no-op run (start, handler, finish, Celery's trace)
  went 1.40 -> 0.55-0.6 ms CPU at 2,000 queued runs.
- *The payload compressed once.* The intake keeps the body's JSON text, compresses it once,
  and the store row and the task message share those bytes: a message is 3.7 kB instead of
  16.9 kB, so encoding it, Redis's copy in its unacknowledged set and the worker's decoding
  all shrink.
- *Brokers.* The embedded `sqlite://` transport wakes the consumer on each acknowledgement
  instead of sleeping a 0.1 s polling interval whenever the prefetch window is full (that
  sleep was the whole 90/s ceiling), hands a message out with one `DELETE ... RETURNING`,
  finds a queue's next message through an index of its own, and stores a producer batch in
  one transaction. On Redis, one client object per kombu channel (kombu built a
  `redis.Redis`, ~72 us, for every publish and every message's two bookkeeping pipelines).
- *Memory.* No SQLAlchemy ORM in the worker, PyJWT and cryptography only once a JWT is
  signed, PostgreSQL's SQL dialect only on PostgreSQL, one TLS context per process instead of
  one per httpx pool. What is left is mostly import weight the bare stack carries too (the
  reference rows of table 4); a 50-thread worker adds a few MB of thread stacks and arenas.
- *The I/O handler* calls `event.github.get(...)` as a user would; our client shards its
  connection pool, because httpcore's pool bookkeeping grows with the square of its size.

One worker process is bound by its GIL; a second one adds what the two cores have left. The
202 p99 target cannot be met at concurrency 100 on this host by any handler, inline or bare:
with 100 requests in flight, Little's law gives 100 / (answers per second) as the mean wait,
about 50 ms at 2,000 answers/s, so the 99th percentile is over 100 ms even for the inline
no-op (table 3)."""


def render(r: Results, quick: bool) -> str:
    lines: list[str] = []
    add = lines.append
    s1 = [r.redis, r.redis2, r.sqlite]
    add("**1. Webhook -> run succeeded, no-op `async def` handler** (deliveries/s from the first")
    add("post until the store shows every run succeeded; SQLite store; one worker process, and")
    add("on Redis also two, as a 2-core host would run them. The one-worker Redis row and its")
    rounds = len(r.redis_ratios)
    add(f"reference: the median of {rounds} rounds run alternately, and the ratio per round)")
    add("")
    add("| broker | worker | deliveries | concurrency | target | end to end | workers' drain "
        "| 202 p50 / p99 ms | result |")  # fmt: skip
    add("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for t, target in zip(s1, (1000, 1000, 300), strict=True):
        assert t.post is not None
        workers = f"{t.workers} x " if t.workers > 1 else ""
        add(
            f"| {t.broker} | {workers}`{t.pool}` | {t.deliveries:,} | {t.concurrency}"
            f" | >= {target:,}/s"
            f" | {t.e2e_rate:,.0f}/s | {t.drain_rate:,.0f}/s"
            f" | {pct(t.post.latencies_ms, 50):.1f} / {pct(t.post.latencies_ms, 99):.1f}"
            f" | {verdict(t.e2e_rate >= target)} |"
        )
    b = r.bare_redis
    assert b.post is not None
    add(
        f"| redis | `{b.pool}`, **bare FastAPI + Celery** (reference) | {b.deliveries:,}"
        f" | {b.concurrency} | - | {b.e2e_rate:,.0f}/s | - | {pct(b.post.latencies_ms, 50):.1f}"
        f" / {pct(b.post.latencies_ms, 99):.1f} | ours {fmt_ratios(r.redis_ratios)} |"
    )
    add("")
    add("**2. An `async def` handler awaiting a 50 ms GitHub call** (FakeGitHub; Redis; runs/s")
    add("from the first run started to the last finished; the threads row and its reference:")
    add(f"median of {len(r.io_ratios)} alternating rounds)")
    add("")
    add("| worker | deliveries | target | handler runs/s | end to end | result |")
    add("|---|---:|---:|---:|---:|---|")
    io_targets: tuple[tuple[Any, int | None], ...] = ((r.io_threads, 400), (r.io_prefork, None))
    for t, io_target in io_targets:
        goal = f">= {io_target}/s" if io_target else "contrast (~37/s)"
        ok = verdict(t.drain_rate >= io_target) if io_target else "-"
        add(
            f"| `{t.pool}` | {t.deliveries:,} | {goal} | {t.drain_rate:,.0f}/s"
            f" | {t.e2e_rate:,.0f}/s | {ok} |"
        )
    b = r.bare_io
    add(
        f"| `{b.pool}`, **bare FastAPI + Celery** (reference) | {b.deliveries:,} | - | -"
        f" | {b.e2e_rate:,.0f}/s | ours {fmt_ratios(r.io_ratios)} |"
    )
    add("")
    add("**CPU per delivery, by process** (ms of user + system time over the timed posts and")
    add("drain, per delivery; the two cores give 2,000 ms per second in all)")
    add("")
    names = ["web", "workers", "redis-server", "FakeGitHub", "load generator"]
    add("| run | " + " | ".join(names) + " | total |")
    add("|---|" + "---:|" * (len(names) + 1))
    for t in (r.redis, r.redis2, r.sqlite, r.io_threads, r.io_prefork, r.bare_redis, r.bare_io):
        cells = [f"{t.cpu_ms[n]:.2f}" if n in t.cpu_ms else "-" for n in names]
        add(f"| {t.name} | " + " | ".join(cells) + f" | {sum(t.cpu_ms.values()):.2f} |")
    add("")
    ack = r.ack
    inline_rps = statistics.median(x.rps for x in ack.inline)
    bg_rps = statistics.median(x.rps for x in ack.background)
    ratio = statistics.median(ack.ratios())
    p50 = statistics.median(pct(x.latencies_ms, 50) for x in ack.background)
    p99 = statistics.median(pct(x.latencies_ms, 99) for x in ack.background)
    ip50 = statistics.median(pct(x.latencies_ms, 50) for x in ack.inline)
    ip99 = statistics.median(pct(x.latencies_ms, 99) for x in ack.inline)
    add(f"**3. Acknowledgement** (Redis, concurrency {ack.concurrency}, {ack.requests:,} posts")
    add(f"per round, {ack.rounds} rounds alternating; no worker running: medians of rounds)")
    add("")
    add("| measure | target | measured | result |")
    add("|---|---:|---:|---|")
    add(f"| 202 p99 | < 50 ms | {p99:.1f} ms (p50 {p50:.1f}) | {verdict(p99 < 50)} |")
    add(f"| 202 answers/s vs inline no-op (same app) | >= 0.80x | {bg_rps:,.0f} vs "
        f"{inline_rps:,.0f} req/s = {ratio:.2f}x ({min(ack.ratios()):.2f}-"
        f"{max(ack.ratios()):.2f}) | {verdict(ratio >= 0.8)} |")  # fmt: skip
    add(f"| inline no-op p50 / p99 (reference) | - | {ip50:.1f} / {ip99:.1f} ms | - |")
    bare_rps = statistics.median(x.rps for x in ack.bare)
    bare_ratio = statistics.median(ack.ratios("bare"))
    bp50 = statistics.median(pct(x.latencies_ms, 50) for x in ack.bare)
    bp99 = statistics.median(pct(x.latencies_ms, 99) for x in ack.bare)
    add(f"| bare FastAPI route calling `.delay()` (reference): answers/s vs inline, p50 / p99"
        f" | - | {bare_rps:,.0f} req/s = {bare_ratio:.2f}x ({min(ack.ratios('bare')):.2f}-"
        f"{max(ack.ratios('bare')):.2f}); {bp50:.1f} / {bp99:.1f} ms"
        f" | ours {bg_rps / bare_rps:.2f}x |")  # fmt: skip
    add("")
    add("**4. RSS per worker process** (VmRSS after the throughput runs; main + pool children)")
    add("")
    add(
        "| worker | after | RSS of the processes | PSS (shared pages in shares) | target | result |"
    )
    add("|---|---|---:|---:|---:|---|")
    for t in (r.redis, r.sqlite, r.io_threads, r.io_prefork):
        worst = max(mb for _, mb in t.rss)
        add(
            f"| `{t.pool}` | {t.name} | {fmt_rss(t.rss)} | {fmt_rss(t.pss)} | < 100 MB (aim 80)"
            f" | {verdict(worst < 100)}{'' if worst < 80 else ' (over 80)'} |"
        )
    for t in (r.bare_redis, r.bare_io):
        add(f"| `{t.pool}` | {t.name} (reference) | {fmt_rss(t.rss)} | {fmt_rss(t.pss)} | - | - |")
    add("")
    c = r.crash
    assert c.post is not None
    lost = c.post.requests - c.stored_deliveries
    states = ", ".join(f"{k} {v:,}" for k, v in c.counts.items() if v) or "none"
    crash_ok = lost == 0 and c.counts.get("succeeded") == c.deliveries
    add(f"**5. Worker crashes** (Redis, `{c.pool}`, {c.deliveries:,} deliveries, the whole "
        f"worker group SIGKILLed {c.kills} times and replaced; sweeper every 1 s)")  # fmt: skip
    add("")
    add("| measure | target | measured | result |")
    add("|---|---:|---:|---|")
    add(f"| deliveries answered 202 / in the store | all | {c.post.requests:,} / "
        f"{c.stored_deliveries:,} | {verdict(lost == 0)} |")  # fmt: skip
    add(f"| runs by state | all succeeded | {states} | {verdict(crash_ok)} |")
    add(f"| runs with attempts > 1 | - | {c.retried} | - |")
    add(f"| runs republished by the sweeper | - | {c.republished} | - |")
    add(f"| killed at (runs succeeded) | spaced | {', '.join(map(str, c.killed_at))} | - |")
    add(f"| time to all succeeded | - | {c.seconds:.0f} s | - |")
    add("")
    add(WHERE_THE_TIME_GOES)
    return "\n".join(lines)


def write_section(text: str) -> None:
    current = DOC.read_text() if DOC.exists() else "# Performance\n"
    block = f"{HEADING}\n{START}\n\n{text.strip()}\n\n{END}\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n{re.escape(START)}\n.*?{re.escape(END)}\n?",
                         re.S | re.M)  # fmt: skip
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current)
    else:
        updated = current.rstrip() + "\n\n" + block
    DOC.write_text(updated)


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 1 min); writes nothing")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--serve-fake-github", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--only", help="comma-separated scenarios: 1,2,3,5 (prints only)")
    args = parser.parse_args()
    if args.serve_fake_github:
        serve_fake_github(int(args.serve_fake_github[0]), Path(args.serve_fake_github[1]))
        return 0

    quick = args.quick
    only = set(args.only.split(",")) if args.only else {"1", "2", "3", "5"}
    n = {  # deliveries per scenario: (quick, full)
        "redis": (600, 8000),
        "sqlite": (300, 3000),
        "io": (400, 2000),
        "io_prefork": (80, 300),
        "ack": (500, 2000),
        "crash": (1000, 10000),
    }
    size = {k: v[0] if quick else v[1] for k, v in n.items()}
    print(machine(), flush=True)
    started = time.monotonic()
    threads8, prefork2, threads50 = Pool("threads", 8), Pool("prefork", 2), Pool("threads", 50)
    with tempfile.TemporaryDirectory(prefix="bench-background-") as tmp_name:
        tmp = Path(tmp_name)
        from ghapp_celery.testing import make_private_key

        key_file = tmp / "app.pem"
        key_file.write_text(make_private_key())
        warm = 100 if quick else 300
        res: dict[str, Any] = {}
        pairs = 1 if quick else 3  # alternating rounds of ours and the bare stack
        if "1" in only:
            res["redis"], res["bare_redis"], res["redis_ratios"] = side_by_side(
                lambda n: throughput(
                    Throughput(f"noop-redis-r{n + 1}", "redis", threads8, "noop", size["redis"],
                               100), tmp, warm),
                lambda n: bare_throughput(
                    Throughput(f"bare-noop-redis-r{n + 1}", "redis", threads8, "noop",
                               size["redis"], 100), tmp, warm),
                pairs,
            )  # fmt: skip
            res["redis2"] = throughput(
                Throughput("noop-redis-2", "redis", threads8, "noop", size["redis"], 100, 2),
                tmp,
                warm,
            )
            res["sqlite"] = throughput(
                Throughput("noop-sqlite", "sqlite", threads8, "noop", size["sqlite"], 100),
                tmp,
                warm,
            )
        if "2" in only:
            res["io_threads"], res["bare_io"], res["io_ratios"] = side_by_side(
                lambda n: throughput(
                    Throughput(f"io-threads-r{n + 1}", "redis", threads50, "fetch", size["io"],
                               100), tmp, warm, key_file),
                lambda n: bare_throughput(
                    Throughput(f"bare-io-threads-r{n + 1}", "redis", threads50, "fetch",
                               size["io"], 100), tmp, warm, key_file),
                pairs,
            )  # fmt: skip
            io2 = Throughput("io-prefork", "redis", prefork2, "fetch", size["io_prefork"], 100)
            res["io_prefork"] = throughput(io2, tmp, 20, key_file)
        if "3" in only:
            res["ack"] = acknowledgement(tmp, 1 if quick else 5, size["ack"], 100)
        if "5" in only:
            crash_run = Crash(size["crash"], 2 if quick else 5, threads8)
            res["crash"] = crash(tmp, crash_run, 50)
    elapsed = time.monotonic() - started
    if len(res) < 11:
        print(f"({elapsed:.0f} s)")
        return 0
    results = Results(elapsed=elapsed, **res)
    text = render(results, quick)
    print("\n" + text + f"\n\n({elapsed:.0f} s)")
    if quick or args.no_write:
        return 0
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.split()[2:3]
    method = METHOD.format(
        date=datetime.now(UTC).date().isoformat(),
        elapsed=elapsed,
        machine=machine(),
        redis=" ".join(redis_version).removeprefix("v="),
    )
    write_section(method + "\n\n" + text)
    print(f"Wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
