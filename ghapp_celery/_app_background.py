"""GitHubApp's background side: its Celery app, the delivery store, replay and the sweeper."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .routing import HandlerRegistry

if TYPE_CHECKING:
    from celery import Celery

    from .config import Settings
    from .github.auth import GitHubAppAuth
    from .store import DeliveryStore, RunRecord
    from .tasks.scheduler import CeleryScheduler
    from .tasks.sweeper import SweepReport

__all__ = ["BackgroundMixin"]


class BackgroundMixin:
    """Mixed into GitHubApp; the imports stay lazy so inline-only apps never load Celery."""

    registry: HandlerRegistry
    _lock: threading.Lock
    _celery: Celery | None
    _store: DeliveryStore | None
    _scheduler: CeleryScheduler | None

    if TYPE_CHECKING:  # provided by GitHubApp

        @property
        def settings(self) -> Settings: ...

    if TYPE_CHECKING:  # provided by GitHubApp

        @property
        def oauth(self) -> Any: ...

        @property
        def auth(self) -> GitHubAppAuth: ...

    @property
    def celery(self) -> Celery:
        """The Celery app running this GitHubApp's background handlers.

        Point workers at it: ``celery -A myapp:celery worker -Q github.issues``.
        """
        if self._celery is None:
            with self._lock:
                if self._celery is None:
                    from .tasks.celery_app import make_celery
                    from .tasks.handlers import register_handler_task
                    from .tasks.loop import install_signal_handlers
                    from .tasks.sweeper import register_sweep_task

                    celery = make_celery(self.registry, self.settings)
                    for spec in self.registry.background():
                        register_handler_task(celery, self, spec)
                    register_sweep_task(celery, self.sweep, self.settings)
                    install_signal_handlers(celery)
                    self._celery = celery
        return self._celery

    @property
    def store(self) -> DeliveryStore:
        """The delivery store (SQLite in GITHUBAPP_DATA_DIR unless GITHUBAPP_DATABASE_URL)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from .store import DeliveryStore

                    self._store = DeliveryStore(self.settings.store_url())
        return self._store

    @property
    def scheduler(self) -> CeleryScheduler:
        if self._scheduler is None:
            from .tasks.scheduler import CeleryScheduler

            self._scheduler = CeleryScheduler(self.celery, self.store)
        return self._scheduler

    def replay(self, delivery_id: str) -> list[RunRecord]:
        """Run a delivery's failed and dead handlers again; returns the runs published."""
        runs = self.store.replay(delivery_id)
        published = set(self.scheduler.republish_stored(runs))
        return [run for run in runs if run.id in published]

    def sweep(self) -> SweepReport:
        """Republish runs that were never published or whose worker died (see tasks.sweeper)."""
        from .tasks.sweeper import sweep

        report = sweep(self.scheduler, self.settings)
        manager = self.oauth if self.settings.oauth_session_secret is not None else None
        if manager is not None:
            # Ended sessions' tokens and expired denylist entries: nothing else deletes them.
            report.oauth_rows_deleted = manager.store.purge()
        return report
