"""BackgroundRuntime: the background side a GitHubApp holds.

It owns the Celery app that runs the background handlers, the delivery store, the scheduler
that records runs and publishes their messages, and replay and the sweeper over those. Each
part is created on first use (an app whose handlers are all inline never builds a Celery
app), under the GitHubApp's one lock (see ``ghapp_celery._lazy``).

The handler tasks take this runtime as their ``AppServices``: it hands them the app's
settings and credentials and its own store, so a task reaches nothing else of the app.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._lazy import Lazy
from ..routing import HandlerRegistry, HandlerSpec

if TYPE_CHECKING:
    from celery import Celery

    from ..config import Settings
    from ..github.auth import GitHubAppAuth
    from ..store import DeliveryStore, RunRecord
    from .scheduler import CeleryScheduler
    from .sweeper import SweepReport

__all__ = ["BackgroundRuntime"]


class BackgroundRuntime:
    """The Celery app, store, scheduler, replay and sweep of one GitHubApp.

        ``settings``, ``auth`` and ``store`` are callables: the app creates each lazily and may
        re-read its settings in ``init_app``. The store is the app's own part, not created here:
        this package loads kombu (for the embedded broker's URL scheme), and an app that only reads
        its store (the status API) loads SQLAlchemy alone. ``purge_oauth`` deletes the ended OAuth
        sessions' rows on each sweep and returns how many (None when the app keeps no OAuth
        sessions). ``check_startup`` runs when a worker of the Celery app starts and stops it on a
    ConfigurationError. The celery imports stay inside the factories.
    """

    def __init__(
        self,
        registry: HandlerRegistry,
        *,
        settings: Callable[[], Settings],
        auth: Callable[[], GitHubAppAuth],
        store: Callable[[], DeliveryStore],
        purge_oauth: Callable[[], int | None],
        lock: threading.RLock,
        check_startup: Callable[[], None] | None = None,
    ) -> None:
        self.registry = registry
        self._settings = settings
        self._auth = auth
        self._store = store
        self._purge_oauth = purge_oauth
        self._check_startup = check_startup
        self._celery = Lazy(self._create_celery, lock)
        self._scheduler = Lazy(self._create_scheduler, lock)

    # -- AppServices, for the handler tasks ---------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings()

    @property
    def auth(self) -> GitHubAppAuth:
        return self._auth()

    # -- the parts ----------------------------------------------------------------------------

    @property
    def celery(self) -> Celery:
        return self._celery.get()

    @property
    def store(self) -> DeliveryStore:
        return self._store()

    @property
    def scheduler(self) -> CeleryScheduler:
        return self._scheduler.get()

    def _create_celery(self) -> Celery:
        from .celery_app import connect_startup_check, make_celery
        from .handlers import register_handler_task
        from .loop import install_signal_handlers
        from .sweeper import register_sweep_task
        from .worker_logs import connect_worker_logging
        from .worker_metrics import connect_worker_metrics

        settings = self.settings
        celery = make_celery(self.registry, settings)
        for spec in self.registry.background():
            register_handler_task(celery, self, spec)
        register_sweep_task(celery, self.sweep, settings)
        install_signal_handlers(celery)
        connect_worker_logging()  # Celery's handlers get the log context and format
        if self._check_startup is not None:
            connect_startup_check(celery, self._check_startup)
        # After the start-up check: a worker that will not start opens no port.
        connect_worker_metrics(celery, lambda: self.settings)
        return celery

    def _create_scheduler(self) -> CeleryScheduler:
        from .scheduler import CeleryScheduler

        return CeleryScheduler(self.celery, self.store)

    # -- what GitHubApp delegates -------------------------------------------------------------

    def add_handler(self, spec: HandlerSpec) -> None:
        """Make a newly registered background handler a task of the Celery app."""
        celery = self._celery.peek()
        if celery is None:
            _ = self.celery  # creating it registers every background handler, this one too
            return
        from .celery_app import declare_queues
        from .handlers import register_handler_task

        register_handler_task(celery, self, spec)
        declare_queues(celery, self.registry)

    def replay(self, delivery_id: str) -> list[RunRecord]:
        """Run a delivery's failed and dead handlers again; returns the runs published."""
        runs = self.store.replay(delivery_id)
        published = set(self.scheduler.republish_stored(runs))
        return [run for run in runs if run.id in published]

    def sweep(self) -> SweepReport:
        """Republish runs that were never published or whose worker died (see tasks.sweeper)."""
        from .sweeper import sweep

        report = sweep(self.scheduler, self.settings)
        deleted = self._purge_oauth()
        if deleted is not None:
            # Ended sessions' tokens and expired denylist entries: nothing else deletes them.
            report.oauth_rows_deleted = deleted
        return report
