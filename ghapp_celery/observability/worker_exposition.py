"""A Celery worker's metrics endpoint: every process of the worker, summed, on one port.

A prefork worker's handlers run in its pool children, each with its own memory, and the
children come and go (``max_tasks_per_child``, a crash, a SIGKILL). So the worker uses
prometheus-client's multiprocess mode under every pool (one way, whatever the pool): each
process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``, and the worker's main
process serves the sum of the files on ``GITHUBAPP_METRICS_WORKER_PORT``.

Dead children: their counters and histograms stay in the sum (the totals of work done must
not go down), while their gauges (the rate-limit ones) are removed at the next scrape, so a
killed process leaves no stale series. prometheus-client leaves that bookkeeping to the
caller (``mark_process_dead``); Celery has no signal for a child killed by SIGKILL, so each
scrape checks the pids of the files instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = ["prepare_multiprocess_dir", "prune_dead_processes", "serve_worker_metrics"]

LOG = logging.getLogger("ghapp_celery.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> Path:
    """Make sure ``PROMETHEUS_MULTIPROC_DIR`` names a directory, before any metric exists.

    Unset: a new empty directory of this worker's own (removed when it exits). Set by the
    user: theirs, as it is (prometheus-client asks that it be emptied between runs; the
    user's deployment owns that). Must run in the worker's main process before it forks.
    """
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="ghapp-metrics-"))
        os.environ[ENV] = str(path)
        import atexit

        atexit.register(shutil.rmtree, path, ignore_errors=True)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        # prometheus-client picks its value class when it is first imported; something (a
        # user's module, Flower's) imported it before the directory was set: pick again, so
        # the metrics created from here on write to the files.
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return path


def _pid_of(file: Path) -> int | None:
    # prometheus-client names the files "<type>[_<mode>]_<pid>.db".
    tail = file.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def prune_dead_processes(path: Path) -> list[int]:
    """Drop the live gauges of processes that are gone; returns their pids."""
    from prometheus_client.multiprocess import mark_process_dead

    dead = sorted(
        {
            pid
            for file in path.glob("gauge_live*.db")
            if (pid := _pid_of(file)) is not None and not _alive(pid)
        }
    )
    for pid in dead:
        mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return dead


class _WorkerCollector:
    """The multiprocess sum, pruned of dead processes' gauges first."""

    def __init__(self, path: Path) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self._path = path
        self._files = MultiProcessCollector(None, str(path))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        prune_dead_processes(self._path)
        return self._files.collect()  # type: ignore[no-untyped-call,no-any-return]


def serve_worker_metrics(port: int, host: str, path: Path) -> Any:
    """Serve the worker's metrics on ``host:port`` from a daemon thread; returns the server."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(_WorkerCollector(path))
    server, _thread = start_http_server(port, host, registry=registry)
    LOG.info("Worker metrics on http://%s:%d/metrics", host, server.server_port)
    return server
