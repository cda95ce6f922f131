"""Keep the leases of the runs a worker process is executing alive (a heartbeat).

A run's lease is short (``GITHUBAPP_RUN_LEASE``, 60 s by default); while the run executes, one
thread per worker process renews the leases of all its running runs in a single UPDATE every
third of a lease. So a handler may run as long as it needs (a blocking ``def`` handler cannot
be interrupted on the threads pool) without the sweeper taking it for dead, and a killed
worker's runs expire, and are run again, within one lease.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store import DeliveryStore

__all__ = ["LeaseKeeper", "lease_keeper"]

LOG = logging.getLogger("ghapp_celery.tasks")

_IDLE_TICK = 5.0  # seconds between looks when no run is held
# After a failed renewal (the store is out): try again this often, so the lease is renewed
# within a second of the store coming back, before the sweeper can take it for lapsed.
_RETRY_TICK = 0.5


class LeaseKeeper:
    """Renews held leases from one daemon thread, started lazily in each process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[DeliveryStore, float]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._tick = _IDLE_TICK  # what the renewal thread is currently waiting out
        self._failing = False  # the last renewal failed

    @contextmanager
    def hold(self, store: DeliveryStore, run_id: str, lease_seconds: float) -> Iterator[None]:
        """Renew ``run_id``'s lease for as long as the block runs."""
        with self._lock:
            self._ensure_thread()
            self._held[run_id] = (store, lease_seconds)
            # Wake the thread only when this lease needs a shorter tick than the one it is
            # waiting out: waking it for every run would renew a lease just granted, one
            # more store write per task.
            wake = lease_seconds / 3 < self._tick
        if wake:
            self._wake.set()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(run_id, None)

    def _after_fork_in_child(self) -> None:
        # The parent's lock may have been held by its renewal thread at fork time, and the
        # parent's runs are not this process's to renew.
        self._lock = threading.Lock()
        self._held = {}
        self._wake = threading.Event()
        self._thread = None
        self._pid = None
        self._tick = _IDLE_TICK
        self._failing = False

    def _ensure_thread(self) -> None:
        # A thread does not survive fork: a prefork child starts its own on first use.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(
            target=self._run, name=f"ghapp-lease-{self._pid}", daemon=True
        )
        self._thread.start()

    def _next_tick(self) -> float:
        # Computed and published under the lock hold() reads it under: a run registered
        # before this sees its lease counted here, one registered after sees this tick.
        with self._lock:
            leases = [lease for _, lease in self._held.values()]
            self._tick = max(0.2, min(leases) / 3) if leases else _IDLE_TICK
            if leases and self._failing:
                self._tick = min(self._tick, _RETRY_TICK)
            return self._tick

    def _run(self) -> None:
        while True:
            self._wake.wait(self._next_tick())
            self._wake.clear()
            self.renew_now()

    def renew_now(self) -> int:
        """Renew every held lease now; returns how many runs were renewed."""
        with self._lock:
            groups: dict[tuple[int, float], tuple[DeliveryStore, list[str]]] = {}
            for run_id, (store, lease) in self._held.items():
                groups.setdefault((id(store), lease), (store, []))[1].append(run_id)
        renewed = 0
        failing = False
        for (_, lease), (store, run_ids) in groups.items():
            try:
                renewed += store.renew_leases(run_ids, lease_seconds=lease)
            except Exception as exc:
                # The store may be briefly unavailable: try again soon (_RETRY_TICK). A lease
                # lapses only after a whole lease without a renewal.
                if not self._failing:
                    LOG.warning(
                        "Could not renew %d lease(s): %s; retrying every %.1f s",
                        len(run_ids),
                        type(exc).__name__,
                        _RETRY_TICK,
                    )
                failing = True
        if self._failing and not failing:
            LOG.info("Lease renewals work again")
        self._failing = failing
        return renewed


lease_keeper = LeaseKeeper()
os.register_at_fork(after_in_child=lease_keeper._after_fork_in_child)
