"""Engine set-up per backend, and the one place database errors become StoreUnavailable."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ..exceptions import ConfigurationError
from .errors import StoreUnavailable

__all__ = ["WRITE", "fork_safe", "make_engine", "prepare_sqlite_path", "unavailable_on_error"]

# Execution option naming a transaction that will write. On SQLite it starts with
# BEGIN IMMEDIATE, taking the write lock up front: a deferred transaction that reads and then
# writes fails at once with SQLITE_BUSY when another process wrote in between, and
# busy_timeout does not help there.
WRITE = "ghapp_write"

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        # The message is generic because the URL may contain a password.
        raise ConfigurationError("The store's database URL cannot be parsed") from exc


_SUPPORTED = "sqlite:///path/to/store.sqlite or postgresql+psycopg://user:password@host/db"


def _check_backend(url: URL) -> None:
    """A clear ConfigurationError for a URL the store cannot use, before SQLAlchemy's own
    (``Can't load plugin: sqlalchemy.dialects:postgres``, ``No module named 'MySQLdb'``)."""
    backend = url.get_backend_name()
    if backend == "postgres":  # Heroku-style URLs; SQLAlchemy dropped the alias in 1.4
        raise ConfigurationError(
            "The store's database URL (GITHUBAPP_DATABASE_URL) starts with postgres://, which "
            "SQLAlchemy does not accept: use postgresql+psycopg://user:password@host/db"
        )
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"The store's database URL (GITHUBAPP_DATABASE_URL) is a {backend!r} URL; the "
            f"store supports SQLite and PostgreSQL: {_SUPPORTED}"
        )


def prepare_sqlite_path(url: URL) -> None:
    """Create the directory of a SQLite file, so ``.ghapp/store.sqlite`` works out of the box."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    if database.startswith("file:"):  # a URI filename; leave it to the user
        return
    try:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable("The delivery store's directory cannot be created") from exc


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level: pysqlite's own implicit BEGIN would otherwise defeat the
    # BEGIN [IMMEDIATE] emitted in _on_sqlite_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets the web process read while a worker writes; NORMAL is durable across
        # application crashes (only a power loss can lose the last commits) and avoids an
        # fsync per commit on the webhook's hot path.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Each pooled connection keeps its own page cache (2 MB by default) and a threads
        # worker holds several; the store's working set is a few recent rows.
        cursor.execute("PRAGMA cache_size = -512")
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Any) -> None:
    # Straight on the driver's connection: through exec_driver_sql the BEGIN alone cost ~35 us
    # of SQLAlchemy's execution machinery, on every transaction.
    write = conn.get_execution_options().get(WRITE)
    conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str | URL, *, pool_size: int | None = None, echo: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets the pragmas and locking above.

    ``hide_parameters``: a failed statement's message (and ``echo``'s log lines) show the SQL
    without its bound values, which hold webhook payloads, user logins and encrypted tokens;
    StoreUnavailable chains that error, so a logged traceback would otherwise carry them.
    """
    parsed = _parse(url)
    _check_backend(parsed)
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    backend = parsed.get_backend_name()
    if pool_size is not None:
        kwargs["pool_size"] = pool_size
    if backend != "sqlite":
        kwargs["pool_pre_ping"] = True  # a server restart must not fail the next webhook
    try:
        engine = create_engine(parsed, **kwargs)
    except ImportError as exc:
        hint = " (pip install 'ghapp-celery[postgres]')" if backend == "postgresql" else ""
        raise ConfigurationError(
            f"The store's database driver {parsed.drivername!r} is not installed{hint}: use "
            f"{_SUPPORTED}"
        ) from exc
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigurationError(
            f"The store cannot use a {parsed.drivername!r} database URL: use {_SUPPORTED}"
        ) from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
    return engine


@contextmanager
def unavailable_on_error() -> Iterator[None]:
    """Turn any database failure into StoreUnavailable, original chained, message generic."""
    try:
        yield
    except (SQLAlchemyError, sqlite3.Error) as exc:  # sqlite3: errors raised in our pragmas
        raise StoreUnavailable(f"The delivery store is unavailable ({type(exc).__name__})") from exc


def is_outage(exc: BaseException) -> bool:
    """Whether a store error means the database itself failed (unreachable, locked, out of
    connections: any statement would fail the same way), not one statement's own problem (a
    constraint, bad data), which is worth retrying apart from the others of its batch."""
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
    if isinstance(cause, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError)):
        return False  # raised by one statement run on the cursor itself (_sqlite_fast)
    return isinstance(cause, (OperationalError, InterfaceError, PoolTimeout, sqlite3.Error))


def fork_safe(engine: Engine, owner_pid: int) -> int:
    """Drop pooled connections inherited across fork (Celery prefork workers); returns the pid.

    A connection shared by parent and child corrupts both sessions, so the child forgets the
    parent's pool without closing it (closing would close the parent's sockets too).
    """
    pid = os.getpid()
    if pid != owner_pid:
        engine.dispose(close=False)
    return pid
