"""Lazy: a part of a GitHubApp created on first use, exactly once, under its owner's lock.

A GitHubApp creates its heavy parts (the GitHub credentials, the Celery app, the delivery
store, the scheduler, the intake, the OAuth integration) only when something first reads
them, so an inline-only app never imports Celery or SQLAlchemy. Every such part is a
``Lazy`` sharing the app's one re-entrant lock: two threads that race to read a part get the
same object, and a part whose factory reads a sibling (the scheduler reads the Celery app and
the store) takes the lock again in the same thread instead of deadlocking.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

__all__ = ["Lazy"]

T = TypeVar("T")


class _Unset:
    """Marks a part not created yet (a part may be None: OAuth that is off)."""


_UNSET = _Unset()


class Lazy(Generic[T]):
    """``get()`` returns the part, calling ``create`` once, under ``lock``, on first use.

    If ``create`` raises, nothing is kept and the next ``get()`` tries again.
    """

    __slots__ = ("_create", "_lock", "_value")

    def __init__(self, create: Callable[[], T], lock: threading.RLock) -> None:
        self._create = create
        self._lock = lock
        self._value: T | _Unset = _UNSET

    def get(self) -> T:
        value = self._value
        if value is _UNSET:  # no lock on the hot path: a created part changes only by reset()
            with self._lock:
                value = self._value
                if value is _UNSET:
                    value = self._value = self._create()
        return cast("T", value)

    def peek(self) -> T | None:
        """The part if it was created, else None; never creates it (used to close parts)."""
        value = self._value
        return None if value is _UNSET else cast("T", value)

    @property
    def created(self) -> bool:
        return self._value is not _UNSET

    def reset(self) -> None:
        """Forget the part, so that the next ``get()`` creates it again (new options)."""
        with self._lock:
            self._value = _UNSET
