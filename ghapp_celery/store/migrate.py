"""Alembic, driven from code: no alembic.ini, the scripts ship inside the package.

Several processes (the web server and each worker) may open a fresh database at the same
moment, so an upgrade runs inside one transaction that first takes a database-wide lock:
BEGIN IMMEDIATE on SQLite, a transaction-scoped advisory lock on PostgreSQL. Both backends
have transactional DDL, so the loser of the race waits, then finds the schema at head and
does nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from ..exceptions import ConfigurationError
from ._schema import VERSION_TABLE
from .engine import WRITE

__all__ = ["VERSION_TABLE", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key: any fixed 64-bit number; this one spells "ghapp".
_PG_LOCK_KEY = 0x6768617070


def alembic_config(connection: Connection | None = None) -> Config:
    """A Config pointing at the packaged scripts; env.py uses ``connection`` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: Engine, target: str = "head") -> None:
    """Bring the schema to ``target``; a no-op when it is already there."""
    # Cheap check first, without the write lock, so a process start on an up-to-date
    # database never blocks behind other writers.
    script = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as conn:
        current = current_revision(conn)
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        # A newer ghapp_celery migrated this database and this one was rolled back to.
        raise ConfigurationError(
            f"The store's schema is at revision {current!r}, which this version of "
            "ghapp_celery does not know; upgrade ghapp_celery or restore the database"
        )
    if target == "head" and current == script.get_current_head():
        return
    with engine.execution_options(**{WRITE: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        # env.py sees a connection already in a transaction and runs inside it, so the
        # migration commits (or rolls back) with the lock held.
        command.upgrade(alembic_config(conn), target)
