"""Is the database already at this version's schema? Answered with one SELECT, no Alembic.

Every process that opens the store asks this once. Importing Alembic to answer it costs about
10 MB of memory per process (measured on a worker), so Alembic is only imported when the
answer is no and there is something to migrate.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

__all__ = ["SCHEMA_HEAD", "VERSION_TABLE", "at_head", "current_revision", "upgrade_if_needed"]

#: The newest migration in migrations/versions; tests/test_store_schema.py keeps it equal to
#: Alembic's head, so adding a migration without updating it fails the tests.
SCHEMA_HEAD = "0004"
# Not "alembic_version": the application may run its own Alembic history in the same database.
VERSION_TABLE = "ghapp_alembic_version"


def at_head(engine: Engine) -> bool:
    """True when the store's version table says SCHEMA_HEAD; False when missing or older."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()  # noqa: S608
            return list(rows) == [SCHEMA_HEAD]
    except DBAPIError:  # no table yet: a new database
        return False


def upgrade_if_needed(engine: Engine) -> None:
    """Alembic ``upgrade head`` unless the database is already there."""
    if at_head(engine):
        return
    from .migrate import upgrade

    upgrade(engine)


def current_revision(connection: Connection) -> str | None:
    from .migrate import current_revision as alembic_current_revision

    return alembic_current_revision(connection)
