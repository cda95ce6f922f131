"""A worker's hottest statements, run on SQLite's own cursor after SQLAlchemy compiled them.

Every run costs a worker two write transactions (start and finish) of two statements each.
Through SQLAlchemy's execution layer a statement spent about 45 us in Python before SQLite
saw it (parameter processing, an execution context, result set-up), more than SQLite took to
run it. These statements are still written with SQLAlchemy Core and compiled once by its
SQLite dialect, and their parameters go through the same type processors, so the SQL and
the values stored are exactly what ``Connection.execute`` would have sent; only the
per-call machinery is skipped. They run inside the caller's SQLAlchemy transaction, on its
connection. In process, a start went from 198 to about 110 us and a finish from 205 to 100.

When someone watches the engine's statements (``echo``, a ``before_cursor_execute`` or
``after_cursor_execute`` listener such as query logging or OpenTelemetry's instrumentation),
the statements go through ``Connection.execute`` so they are seen. Statements this path could
not copy exactly (IN lists rendered per call, returned columns SQLAlchemy converts) are refused
when compiled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.base import Executable

__all__ = ["SQLiteStatement", "first_row"]


class SQLiteStatement:
    """``statement`` compiled for SQLite once; ``first(conn, params)`` runs it on ``conn``'s
    DBAPI connection and returns the first row (a plain tuple) or None."""

    __slots__ = ("_constants", "_order", "_processors", "_sql")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        # Only what this shortcut reproduces exactly: no IN lists SQLAlchemy renders per call,
        # no returned column SQLAlchemy would convert (a datetime would come back as text).
        if compiled.post_compile_params:
            raise ValueError("a statement with per-call IN lists needs Connection.execute")
        for column in compiled.returning or ():
            if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
                raise ValueError(f"RETURNING {column} needs SQLAlchemy's result conversion")
        self._sql: str = str(compiled)
        self._order: tuple[str, ...] = tuple(compiled.positiontup or ())
        binds = compiled.binds
        # Values fixed in the statement (literal comparisons, NULLs in SET); the caller's
        # named parameters are the required ones.
        self._constants: dict[str, Any] = {
            name: binds[name].effective_value for name in self._order if not binds[name].required
        }
        self._processors: dict[str, Callable[[Any], Any]] = {}
        for name in set(self._order):
            processor = binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._processors[name] = processor

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        values = {**self._constants, **params}
        for name, processor in self._processors.items():
            values[name] = processor(values[name])
        driver = conn.connection.driver_connection
        assert driver is not None  # a live connection inside the caller's transaction
        cursor = driver.execute(self._sql, [values[name] for name in self._order])
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return tuple(row) if row is not None else None


# Compiled once per statement and kind of SQLite dialect, shared by every engine of that kind
# (the SQL and processors depend on the dialect's class and the library's version only), so a
# process that makes many stores keeps one entry per statement, not one per engine.
_COMPILED: dict[tuple[Executable, type[Dialect], Any], SQLiteStatement] = {}


def _compiled(statement: Executable, dialect: Dialect) -> SQLiteStatement:
    key = (statement, type(dialect), dialect.server_version_info)
    found = _COMPILED.get(key)
    if found is None:  # two threads may both compile it once: the same result either way
        found = _COMPILED.setdefault(key, SQLiteStatement(statement, dialect))
    return found


def _observed(conn: Connection) -> bool:
    """Whether someone watches this engine's statements (echo, query logging, OpenTelemetry's
    SQLAlchemy instrumentation): they then go through Connection.execute to be seen."""
    dispatch = conn.dispatch
    return bool(conn.engine.echo or dispatch.before_cursor_execute or dispatch.after_cursor_execute)


def first_row(
    conn: Connection, statement: Executable, params: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """The first row ``statement`` returns (None if none): on SQLite through its cursor (the
    statement compiled once per engine), elsewhere, or when the engine's statements are
    observed, through ``conn.execute``."""
    if conn.dialect.name == "sqlite" and not _observed(conn):
        return _compiled(statement, conn.dialect).first(conn, params)
    result = conn.execute(statement, params)
    row = result.first() if result.returns_rows else None
    return tuple(row) if row is not None else None
