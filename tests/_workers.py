"""Start real Celery workers as subprocesses for tests.

A subprocess (not an in-process ``start_worker``) so prefork really forks and signals, process
groups and crashes behave as in production. Readiness:

* ``ready="file"``: the app calls :func:`install_ready_marker` at import; the worker's
  ``worker_ready`` signal writes the file named by ``$GHAPP_TEST_WORKER_READY_FILE``. This is the
  only way with kombu's SQLAlchemy transport, which has no remote control (``ping`` sees nothing).
* ``ready="ping"``: poll ``control.ping`` on a client app, for brokers with remote control
  (Redis, RabbitMQ).

Typical use::

    broker = sqlite_broker_url(tmp_path / "broker.sqlite")
    with CeleryWorker("tests.loopapp:celery_app", broker, tmp_path, pool="threads",
                      concurrency=8, queue="q1") as worker:
        ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_ENV = "GHAPP_TEST_WORKER_READY_FILE"

#: The Celery pools the tests run workers with.
Pool = Literal["prefork", "solo", "threads"]


def install_ready_marker() -> None:
    """Connect ``worker_ready`` to write the ready file. Call at import in the worker's app."""
    from celery import signals

    def _ready(**_: Any) -> None:
        path = os.environ.get(READY_ENV)
        if path:
            # Write then rename so the test never reads a half-written file.
            tmp = f"{path}.tmp"
            Path(tmp).write_text(str(os.getpid()))
            os.replace(tmp, path)

    signals.worker_ready.connect(_ready, weak=False, dispatch_uid="tests._workers.ready")


def _sqlite_wal(path: Path) -> Path:
    # WAL lets the worker poll the queue while the test (and pool children) write; it is a
    # property of the file, so setting it once before anything connects is enough.
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    assert mode == "wal", mode
    return path


def sqlite_broker_url(path: Path, *, scheme: str = "sqlite") -> str:
    """The embedded broker's URL for a WAL-mode SQLite file at ``path``; ``scheme="sqla+sqlite"``
    selects kombu's own SQLAlchemy transport on the same tables."""
    return f"{scheme}:///{_sqlite_wal(path)}"


def sqlite_backend_url(path: Path) -> str:
    """A Celery database result-backend URL for a WAL-mode SQLite file at ``path``."""
    return f"db+sqlite:///{_sqlite_wal(path)}"


class WorkerNotReady(RuntimeError):
    pass


class CeleryWorker:
    """One ``celery worker`` subprocess in its own process group (session)."""

    def __init__(
        self,
        app: str,
        broker_url: str,
        workdir: Path,
        *,
        pool: Pool = "prefork",
        concurrency: int = 1,
        queue: str = "celery",
        result_backend: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        ready: Literal["file", "ping"] = "file",
        ping_app: Any = None,
        ready_timeout: float = 90.0,
        name: str | None = None,
    ) -> None:
        self.app = app
        self.broker_url = broker_url
        self.pool = pool
        self.concurrency = concurrency
        self.queue = queue
        self.result_backend = result_backend
        self.ready = ready
        self.ping_app = ping_app
        self.ready_timeout = ready_timeout
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        tag = f"{name or pool}-{uuid.uuid4().hex[:8]}"
        # A concrete host (not %h) so ping can address it by name.
        self.nodename = f"{tag}@{socket.gethostname()}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.ready_file = workdir / f"{tag}.ready"
        self.log_file = workdir / f"{tag}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "celery", "-A", self.app, "-b", self.broker_url]
        if self.result_backend:
            cmd += ["--result-backend", self.result_backend]
        cmd += [
            "worker",
            "-P",
            self.pool,
            "-c",
            str(self.concurrency),
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-Q",
            self.queue,
            "-n",
            self.nodename,
            "--loglevel=WARNING",
            *self.extra_args,
        ]
        return cmd

    def start(self) -> CeleryWorker:
        if self.proc is not None:
            raise RuntimeError("worker already started")
        env = {**os.environ, **self.extra_env, READY_ENV: str(self.ready_file)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own process group, so kill(whole_group=True) reaches pool children too.
                start_new_session=True,
            )
        return self

    def wait_ready(self) -> CeleryWorker:
        proc = self._require_proc()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise WorkerNotReady(f"worker exited with {proc.returncode}:\n{self.log_tail()}")
            if self._is_ready():
                return self
            time.sleep(0.05)
        self.kill(whole_group=True)
        raise WorkerNotReady(f"worker not ready after {self.ready_timeout}s:\n{self.log_tail()}")

    def _is_ready(self) -> bool:
        if self.ready == "file":
            return self.ready_file.exists()
        if self.ping_app is None:
            raise ValueError('ready="ping" needs ping_app (a Celery app on the same broker)')
        replies = self.ping_app.control.ping(destination=[self.nodename], timeout=0.5)
        return any(self.nodename in reply for reply in replies or [])

    def stop(self, timeout: float = 30.0) -> int:
        """Warm shutdown (SIGTERM); SIGKILL the whole group if it takes longer than ``timeout``."""
        proc = self._require_proc()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(whole_group=True)
                proc.wait(10)
        self._reap_group()
        return proc.returncode

    def kill(self, sig: int = signal.SIGKILL, *, whole_group: bool = False) -> None:
        """Send ``sig`` to the main worker process, or to every process in its group."""
        proc = self._require_proc()
        with contextlib.suppress(ProcessLookupError):
            if whole_group:
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)

    def _reap_group(self, grace: float = 5.0) -> None:
        # Pool children normally exit with the parent; if any linger, they are ours to end.
        proc = self._require_proc()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    # -- inspection -------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._require_proc().pid

    def child_pids(self) -> list[int]:
        """pids whose parent is the main worker process (prefork pool children)."""
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 (ppid) follows the ")" that closes the command name.
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.pid:
                children.append(int(entry.name))
        return children

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def _require_proc(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError("worker not started")
        return self.proc

    def __enter__(self) -> CeleryWorker:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop(timeout=5)
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
