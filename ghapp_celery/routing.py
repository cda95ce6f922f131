"""The handler registry: which functions run for an ``event``, ``event.action`` or ``*``.

Registration order is dispatch order, as in fastapi-githubapp: handlers on the bare event
first, then those on ``event.action``, then the catch-all ``*`` ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .policy import DEFAULT_RETRY, RetryPolicy
from .webhooks import handler_keys

__all__ = ["ANY_EVENT", "DEFAULT_QUEUE", "HandlerRegistry", "HandlerSpec"]

#: The key that matches every delivery (Probot's ``onAny``).
ANY_EVENT = "*"
#: Queue of background handlers registered on ``*``, and of maintenance tasks.
DEFAULT_QUEUE = "github.default"


def _takes_event(func: Callable[..., Any]) -> bool:
    """True when the handler wants the Event passed in (new style), False for ``def f():``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        and (p.default is p.empty or p.kind is p.VAR_POSITIONAL)
    ]
    return bool(positional)


@dataclass(frozen=True)
class HandlerSpec:
    """One registered handler: the function and how it is to be called."""

    key: str
    func: Callable[..., Any]
    is_async: bool
    takes_event: bool
    background: bool = False
    queue_override: str | None = None
    retry: RetryPolicy = field(default=DEFAULT_RETRY)
    timeout: float | None = None

    @property
    def event(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def queue(self) -> str:
        """``github.<event>`` unless the handler names its own queue."""
        if self.queue_override:
            return self.queue_override
        return DEFAULT_QUEUE if self.key == ANY_EVENT else f"github.{self.event}"

    @property
    def task_name(self) -> str:
        """The Celery task name: ``github.<key>:<module>.<function>``, readable in Flower.

        It is built from the key and the function's import path only, so it is the same in
        the web process and in every worker (a requirement for Celery to find the task).
        """
        key = "any" if self.key == ANY_EVENT else self.key
        return f"github.{key}:{self.qualified_name}"

    @property
    def name(self) -> str:
        """The key of this handler's result in the ``calls`` answer (the function's name)."""
        return getattr(self.func, "__name__", repr(self.func))

    @property
    def qualified_name(self) -> str:
        module = getattr(self.func, "__module__", None) or "handlers"
        qualname = getattr(self.func, "__qualname__", self.name)
        return f"{module}.{qualname}"


def _validate_key(key: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ValueError("A handler key is 'event', 'event.action' or '*'")
    key = key.strip()
    if key != ANY_EVENT and (key.count(".") > 1 or key.startswith(".") or key.endswith(".")):
        raise ValueError(f"Invalid handler key {key!r}: use 'event', 'event.action' or '*'")
    return key


class HandlerRegistry:
    """Maps handler keys to the specs registered for them, in registration order."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[HandlerSpec]] = {}

    def add(
        self,
        key: str,
        func: Callable[..., Any],
        *,
        background: bool = False,
        queue: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> HandlerSpec:
        if not callable(func):
            raise TypeError(f"Handler for {key!r} is not callable: {func!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        spec = HandlerSpec(
            key=_validate_key(key),
            func=func,
            is_async=inspect.iscoroutinefunction(func),
            takes_event=_takes_event(func),
            background=background,
            queue_override=queue,
            retry=retry or DEFAULT_RETRY,
            timeout=timeout,
        )
        if background and any(s.task_name == spec.task_name for s in self):
            raise ValueError(f"{spec.task_name} is already registered as a background handler")
        self._by_key.setdefault(spec.key, []).append(spec)
        return spec

    def background(self) -> list[HandlerSpec]:
        """Every background handler, in registration order."""
        return [spec for spec in self if spec.background]

    def match(self, event: str, action: str | None) -> list[HandlerSpec]:
        """Handlers for a delivery, in dispatch order: event, event.action, then ``*``."""
        keys = (*handler_keys(event, action), ANY_EVENT)
        return [spec for key in keys for spec in self._by_key.get(key, [])]

    def mapping(self) -> dict[str, list[Callable[..., Any]]]:
        """``{key: [functions]}``, the shape of fastapi-githubapp's ``_hook_mappings``."""
        return {key: [s.func for s in specs] for key, specs in self._by_key.items()}

    def __iter__(self) -> Iterator[HandlerSpec]:
        for specs in self._by_key.values():
            yield from specs

    def __len__(self) -> int:
        return sum(len(specs) for specs in self._by_key.values())
