"""Alembic environment for the ghapp_celery store.

``ghapp_celery.store.migrate`` passes an open connection in ``config.attributes``; the
``sqlalchemy.url`` main option is the fallback for running the ``alembic`` command by hand
(``alembic -x`` is not needed). Offline (SQL script) mode is supported for DBAs who apply
migrations themselves.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from ghapp_celery.store.models import metadata

config = context.config
VERSION_TABLE = config.get_main_option("version_table") or "ghapp_alembic_version"


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds tables when a later
        # migration needs it.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
