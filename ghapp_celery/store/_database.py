"""What every store table set shares: the engine, first-use migration, fork safety and
transactions (SQLite writers queued on the file's write lock)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection

from ..exceptions import ConfigurationError
from ._combine import WriteCombiner
from ._schema import current_revision as _current_revision
from ._schema import upgrade_if_needed
from ._writelock import SQLiteWriteLock
from .engine import (
    WRITE,
    fork_safe,
    is_outage,
    make_engine,
    prepare_sqlite_path,
    unavailable_on_error,
)

__all__ = ["Database"]

T = TypeVar("T")


class Database:
    """One database URL; subclasses add the queries for their tables."""

    def __init__(
        self,
        url: str,
        *,
        auto_upgrade: bool = True,
        pool_size: int | None = None,
        echo: bool = False,
    ) -> None:
        # No I/O here: the web app can be built while the database is still starting.
        self._engine = make_engine(url, pool_size=pool_size, echo=echo)
        self._dialect = self._engine.dialect.name
        if self._dialect not in ("sqlite", "postgresql"):
            self._engine.dispose()
            raise ConfigurationError(f"{type(self).__name__} supports SQLite and PostgreSQL only")
        self._auto_upgrade = auto_upgrade
        # Shared by every store on the same file in this process (see _writelock).
        self._write_lock = (
            SQLiteWriteLock.for_database(self._engine.url.database)
            if self._dialect == "sqlite"
            else None
        )
        # SQLite only: its writers are serial anyway, so writes that queue up may as well share
        # a commit. PostgreSQL runs them in parallel, and one transaction taking several
        # deliveries' row locks in arbitrary order could deadlock with another.
        self._combiner = (
            WriteCombiner(lambda: self._tx(write=True), retry_alone=lambda e: not is_outage(e))
            if self._dialect == "sqlite"
            else None
        )
        self._ready = False
        self._ready_lock = threading.Lock()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        url = self._engine.url.render_as_string(hide_password=True)
        return f"<{type(self).__name__} {url}>"

    @property
    def location(self) -> str:
        """The database URL with its password masked, for messages."""
        return self._engine.url.render_as_string(hide_password=True)

    def missing_file(self) -> str | None:
        """This store's SQLite file when it does not exist yet, else None (PostgreSQL, an
        existing file, memory): a reader can say "no store here" instead of creating one."""
        url = self._engine.url
        database = url.database
        if self._dialect != "sqlite" or not database or database == ":memory:":
            return None
        if database.startswith("file:"):
            return None
        path = Path(database).expanduser().resolve()
        return None if path.exists() else str(path)

    def upgrade(self) -> None:
        """Alembic ``upgrade head``; idempotent, and safe from several processes at once."""
        self._pid = fork_safe(self._engine, self._pid)
        prepare_sqlite_path(self._engine.url)
        with unavailable_on_error():
            upgrade_if_needed(self._engine)

    def current_revision(self) -> str | None:
        """The schema revision the database is at; None for an empty database."""
        self._pid = fork_safe(self._engine, self._pid)
        prepare_sqlite_path(self._engine.url)
        with unavailable_on_error(), self._engine.connect() as conn:
            return _current_revision(conn)

    def ping(self) -> None:
        """One round trip to the database (readiness probes); StoreUnavailable if it fails."""
        from sqlalchemy import text

        with self._tx(write=False) as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection (the store opens new ones if used again)."""
        self._engine.dispose()

    def _ensure_ready(self) -> None:
        self._pid = fork_safe(self._engine, self._pid)
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                if self._auto_upgrade:
                    self.upgrade()
                else:
                    prepare_sqlite_path(self._engine.url)
                self._ready = True

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Connection]:
        self._ensure_ready()
        if write and self._write_lock is not None:
            with self._write_lock.held(), self._connection(write) as conn:
                yield conn
        else:
            with self._connection(write) as conn:
                yield conn

    def _write(self, apply: Callable[[Connection], T]) -> T:
        """Run ``apply`` in a write transaction, committed before this returns; on SQLite
        possibly together with writes other threads queued meanwhile (one commit for all).
        ``apply`` must only touch the database: it may be run twice if a batch rolls back."""
        if self._combiner is not None:
            return self._combiner.run(apply)
        with self._tx(write=True) as conn:
            return apply(conn)

    @contextmanager
    def _connection(self, write: bool) -> Iterator[Connection]:
        with unavailable_on_error(), self._engine.connect() as conn:
            if write:
                conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn
