"""Prometheus metrics: the intake's answers, the runs' states, the queues, the GitHub client.

Off until ``enable()``: this module imports ``prometheus_client`` only there, and every
recording function below is a no-op (one global read) while it is off, so a delivery pays
nothing for metrics it did not ask for. The GitHubApp enables them when
``GITHUBAPP_METRICS_ENABLED`` is set (see docs/observability.md).

Every label set is bounded by the app, never by the sender:

- ``event``: GitHub's event name, only for deliveries whose signature verified (a request
  that was refused before then counts as ``unknown``, whatever header it sent);
- ``code``: the HTTP status codes the intake answers (about ten);
- ``task``, ``queue``: the app's handlers and queues;
- ``state``: the run states; ``reason``: the sweeper's three cases;
- ``status_class``: ``2xx`` ... ``5xx`` and ``error``; ``resource``: GitHub's rate-limit
  resources (core, search, graphql, ...);
- ``installation``: only with ``GITHUBAPP_METRICS_PER_INSTALLATION``, bounded by the app's
  installations.

Several processes (prefork workers, gunicorn's): prometheus-client's multiprocess mode, in
which each process writes its values to files under ``PROMETHEUS_MULTIPROC_DIR`` and the
process that answers the scrape sums them (``worker_exposition.py`` does this for Celery).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import Metric

__all__ = [
    "ACK_BUCKETS",
    "QueueStats",
    "StoreReading",
    "disable",
    "enable",
    "enabled",
    "github_rate_limit",
    "github_request",
    "register_store_reader",
    "render",
    "run_finished",
    "run_queue_wait",
    "run_state",
    "sweeper_republished",
    "token_minted",
    "webhook_answered",
]

#: Up to GitHub's 10 s: an ack past it is a failed delivery whatever the code said.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 8.0, 10.0)
#: Handler runs take from milliseconds to the handler timeout (default 300 s).
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: From recorded to started: milliseconds when workers keep up, minutes when they do not.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass(frozen=True)
class QueueStats:
    """Runs waiting in one queue (received or queued, not started) and the oldest's age, and
    the runs started and not finished (executing, or waiting for a retry)."""

    depth: int
    oldest_age_seconds: float
    in_flight: int = 0


@dataclass(frozen=True)
class StoreReading:
    """What the store says at scrape time: the waiting runs per queue and the dead runs."""

    queues: Mapping[str, QueueStats]
    dead: int


class _Metrics:
    """The metric objects; one set per process (prometheus-client refuses duplicates)."""

    def __init__(self, registry: CollectorRegistry | None, per_installation: bool) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = REGISTRY if registry is None else registry
        self.registry = reg
        self.per_installation = per_installation
        self.deliveries: Counter = Counter(
            "ghapp_webhook_deliveries",
            "Webhook deliveries answered, by event and HTTP status code.",
            ["event", "code"],
            registry=reg,
        )
        self.ack: Histogram = Histogram(
            "ghapp_webhook_ack_seconds",
            "Seconds from a webhook request's arrival to its answer.",
            buckets=ACK_BUCKETS,
            registry=reg,
        )
        self.runs: Counter = Counter(
            "ghapp_runs",
            "Handler run state changes, by task, queue and the state entered.",
            ["task", "queue", "state"],
            registry=reg,
        )
        self.run_duration: Histogram = Histogram(
            "ghapp_run_duration_seconds",
            "Seconds a handler run took, success or failure, by task.",
            ["task"],
            buckets=RUN_BUCKETS,
            registry=reg,
        )
        self.queue_wait: Histogram = Histogram(
            "ghapp_run_queue_wait_seconds",
            "Seconds from a run being recorded to its first start, by queue.",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=reg,
        )
        self.republished: Counter = Counter(
            "ghapp_sweeper_republished",
            "Runs the sweeper published again, by why they were due.",
            ["reason"],
            registry=reg,
        )
        self.github: Counter = Counter(
            "ghapp_github_requests",
            "HTTP requests sent to GitHub (each try), by answer status class.",
            ["status_class"],
            registry=reg,
        )
        labels = ["resource", "installation"] if per_installation else ["resource"]
        # livemostrecent: in multiprocess mode, the latest value any live process saw; a
        # dead process's value goes with it (mark_process_dead), so no stale series.
        self.rate_remaining: Gauge = Gauge(
            "ghapp_github_rate_limit_remaining",
            "Requests left in the rate-limit window, as GitHub's latest answer said.",
            labels,
            registry=reg,
            multiprocess_mode="livemostrecent",
        )
        self.rate_limit: Gauge = Gauge(
            "ghapp_github_rate_limit_limit",
            "Requests allowed per rate-limit window, as GitHub's latest answer said.",
            labels,
            registry=reg,
            multiprocess_mode="livemostrecent",
        )
        self.mints: Counter = Counter(
            "ghapp_token_mints",
            "Installation access tokens minted (cache misses that asked GitHub).",
            registry=reg,
        )
        self.store_collector: _StoreCollector | None = None


_metrics: _Metrics | None = None
_lock = threading.Lock()


def enabled() -> bool:
    """True once ``enable()`` has run in this process."""
    return _metrics is not None


def enable(*, registry: CollectorRegistry | None = None, per_installation: bool = False) -> None:
    """Create the metrics (once per process; later calls change nothing).

    ``registry``: where they are registered, prometheus-client's default one unless given
    (so the app's own metrics of the default registry appear beside ours on /metrics).
    Raises ``ModuleNotFoundError`` without prometheus-client (the ``[prometheus]`` extra).
    """
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = _Metrics(registry, per_installation)


def disable() -> None:
    """Stop recording and take our metrics out of their registry (tests enable and disable
    them within one process; an app has no reason to)."""
    global _metrics
    with _lock:
        m, _metrics = _metrics, None
    if m is None:
        return
    for collector in (
        m.deliveries, m.ack, m.runs, m.run_duration, m.queue_wait, m.republished,
        m.github, m.rate_remaining, m.rate_limit, m.mints, m.store_collector,
    ):  # fmt: skip
        if collector is not None:
            m.registry.unregister(collector)


# -- recording -------------------------------------------------------------------------------


def webhook_answered(event: str | None, code: int, seconds: float) -> None:
    m = _metrics
    if m is not None:
        m.deliveries.labels(event or "unknown", str(code)).inc()
        m.ack.observe(seconds)


def run_state(task: str, queue: str, state: str, count: int = 1) -> None:
    m = _metrics
    if m is not None:
        m.runs.labels(task, queue, state).inc(count)


def run_finished(task: str, seconds: float) -> None:
    m = _metrics
    if m is not None:
        m.run_duration.labels(task).observe(seconds)


def run_queue_wait(queue: str, seconds: float) -> None:
    m = _metrics
    if m is not None:
        m.queue_wait.labels(queue).observe(max(0.0, seconds))


def sweeper_republished(reason: str, count: int) -> None:
    m = _metrics
    if m is not None and count:
        m.republished.labels(reason).inc(count)


def github_request(status: int | None) -> None:
    """One try sent to GitHub: its status, or None when no answer came (transport error)."""
    m = _metrics
    if m is not None:
        m.github.labels("error" if status is None else f"{status // 100}xx").inc()


def github_rate_limit(resource: str | None, remaining: int, limit: int, identity: str) -> None:
    """GitHub's latest word on a bucket; ``identity`` is the client's (``installation:ID``,
    ``app:ID``, ``user:...``): per installation, only installations get their own label
    (a user's identity is a token digest and never becomes a label)."""
    m = _metrics
    if m is None:
        return
    res = resource or "core"
    if m.per_installation:
        kind, _, rest = identity.partition(":")
        who = rest if kind == "installation" else kind
        m.rate_remaining.labels(res, who).set(remaining)
        m.rate_limit.labels(res, who).set(limit)
    else:
        m.rate_remaining.labels(res).set(remaining)
        m.rate_limit.labels(res).set(limit)


def token_minted() -> None:
    m = _metrics
    if m is not None:
        m.mints.inc()


# -- the store's gauges, read at scrape time -------------------------------------------------


class _StoreCollector:
    """``ghapp_queue_depth``, ``ghapp_queue_oldest_age_seconds``, ``ghapp_runs_in_flight``
    and ``ghapp_runs_dead``.

    Read from the store, not the broker, so they mean the same on every broker (an
    autoscaler's input), and at most once per ``min_interval`` seconds however many scrapers
    ask: each read is three indexed queries. A failed read leaves the series out of that scrape
    (a stale number would tell an autoscaler the queue is fine) and sets
    ``ghapp_store_read_ok`` to 0, which an alert can watch.
    """

    def __init__(self, read: Callable[[], StoreReading], min_interval: float) -> None:
        self._read = read
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._last: tuple[float, StoreReading | None] | None = None

    def _reading(self) -> StoreReading | None:
        import time

        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self._min_interval:
                return self._last[1]
            try:
                reading: StoreReading | None = self._read()
            except Exception:  # the store is down: say so by the missing series
                reading = None
            self._last = (now, reading)
            return reading

    def describe(self) -> Iterable[Metric]:
        # Without it, registering would call collect() and so read the store at start-up.
        return ()

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        reading = self._reading()
        ok = GaugeMetricFamily(
            "ghapp_store_read_ok", "1 when the last read of the store's queue gauges worked."
        )
        ok.add_metric([], 0.0 if reading is None else 1.0)
        yield ok
        if reading is None:
            return
        depth = GaugeMetricFamily(
            "ghapp_queue_depth",
            "Runs waiting to start (received or queued), by queue.",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "ghapp_queue_oldest_age_seconds",
            "Seconds since the oldest waiting run of the queue was recorded.",
            labels=["queue"],
        )
        flying = GaugeMetricFamily(
            "ghapp_runs_in_flight",
            "Runs started and not finished (executing, or waiting for a retry), by queue.",
            labels=["queue"],
        )
        for queue, stats in sorted(reading.queues.items()):
            depth.add_metric([queue], float(stats.depth))
            age.add_metric([queue], stats.oldest_age_seconds)
            flying.add_metric([queue], float(stats.in_flight))
        dead = GaugeMetricFamily("ghapp_runs_dead", "Runs that are dead now (retries used up).")
        dead.add_metric([], float(reading.dead))
        yield depth
        yield age
        yield flying
        yield dead


def register_store_reader(read: Callable[[], StoreReading], *, min_interval: float = 5.0) -> None:
    """Expose the store's gauges from this process (the web app; once per process).

    ``read`` must list every queue the app routes to, waiting runs or not, so a queue
    drained to zero reads 0 instead of vanishing."""
    m = _metrics
    if m is None or m.store_collector is not None:
        return
    m.store_collector = _StoreCollector(read, min_interval)
    m.registry.register(m.store_collector)


# -- exposition ------------------------------------------------------------------------------


def render(accept: str | None = None) -> tuple[bytes, str]:
    """The scrape's body and content type, in the format ``accept`` asks for.

    Under ``PROMETHEUS_MULTIPROC_DIR`` every process's files are summed (gunicorn with
    several uvicorn workers), plus the store's gauges, which are read here, not in files."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    m = _metrics
    encoder, content_type = choose_encoder(accept or "")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        if m is not None and m.store_collector is not None:
            registry.register(m.store_collector)
        return encoder(registry), content_type
    if m is None:
        return b"", content_type
    return encoder(m.registry), content_type
