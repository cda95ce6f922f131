"""One asyncio event loop per worker process, so Celery tasks can run ``async def`` handlers.

Celery 5.7 cannot run coroutine tasks, and starting a loop per task (``asyncio.run``) would throw
away the process's connection pools and token caches on every task. Instead each worker process
owns ONE loop, running forever in a daemon thread. A task thread hands a coroutine to it with
``run_coroutine_threadsafe`` and blocks; with ``-P threads -c N`` that lets N handlers await at
once on the same loop (DESIGN section 4: 355 tasks/s against 37/s for prefork ``-c 2``).

A loop (or any thread) made before ``fork`` is dead in the child: the thread is not copied, so
the loop would never run and every submit would hang. The loop is therefore created lazily and
stamped with ``os.getpid()``; a child that inherits a parent's loop abandons it untouched (its
epoll fd and self-pipe still belong to the parent) and starts its own.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread

from ..exceptions import HandlerTimeout

__all__ = [
    "HandlerTimeout",
    "WorkerLoop",
    "arun_handler",
    "install_signal_handlers",
    "run_handler",
    "worker_loop",
]

T = TypeVar("T")
Closer = Callable[[Any], Awaitable[None]]

logger = logging.getLogger(__name__)

_IN_LOOP_MESSAGE = (
    "{what} was called from a thread that is already running an event loop, where blocking "
    "could deadlock that loop; await it instead: `await worker_loop.arun(coro)` or "
    "`await arun_handler(func, ...)`."
)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _with_timeout(coro: Awaitable[T], timeout: float | None) -> T:
    """Await ``coro``, cancelling it after ``timeout`` seconds.

    The deadline lives inside the loop because Celery's threads pool ignores ``time_limit``.
    ``asyncio.timeout`` (what ``wait_for`` uses since 3.12) is used so a ``TimeoutError`` the
    handler raises itself stays a ``TimeoutError`` and only our own deadline becomes
    ``HandlerTimeout``.
    """
    if timeout is None:
        return await coro
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await coro
    except TimeoutError:
        if deadline.expired():
            raise HandlerTimeout(f"handler did not finish within {timeout:g}s") from None
        raise


async def _await(awaitable: Awaitable[T]) -> T:
    # run_coroutine_threadsafe accepts only coroutines; a plain awaitable gets wrapped.
    return await awaitable


@dataclass
class _Generation:
    """Everything that belongs to one process's loop; replaced wholesale after fork."""

    pid: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    # Only touched from the loop thread, so creation is serialised without a lock.
    resources: dict[str, Any] = field(default_factory=dict)


class WorkerLoop:
    """The process's event loop, in its own thread; recreated after fork."""

    def __init__(self, name: str = "ghapp-celery-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._gen: _Generation | None = None
        # Loops inherited from a parent process: kept referenced so they are never garbage
        # collected (BaseEventLoop.__del__ may close fds the parent still uses).
        self._abandoned: list[_Generation] = []
        self._factories: dict[str, tuple[Callable[[], Any], Closer | None]] = {}
        _instances.add(self)

    # -- the loop ---------------------------------------------------------------------------

    def loop(self) -> asyncio.AbstractEventLoop:
        """This process's loop, started on first use (and again after fork or shutdown)."""
        gen = self._gen
        if gen is not None and gen.pid == os.getpid() and gen.thread.is_alive():
            return gen.loop
        with self._lock:
            return self._ensure_locked().loop

    def _ensure_locked(self) -> _Generation:
        pid = os.getpid()
        gen = self._gen
        if gen is not None and gen.pid != pid:
            self._abandoned.append(gen)
            gen = self._gen = None
        if gen is not None and gen.thread.is_alive():
            return gen
        loop = asyncio.new_event_loop()
        started = threading.Event()
        thread = threading.Thread(
            target=self._serve, args=(loop, started), name=f"{self._name}-{pid}", daemon=True
        )
        thread.start()
        # Wait until run_forever is really running, so callers never race a loop that has not
        # started (and so a failure to start is seen here, not as a hang later).
        if not started.wait(timeout=30):
            raise RuntimeError("the worker event loop thread did not start")
        self._gen = _Generation(pid=pid, loop=loop, thread=thread)
        return self._gen

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()

    @property
    def created_pid(self) -> int | None:
        """pid of the process that created the current loop (None before first use)."""
        return self._gen.pid if self._gen is not None else None

    @property
    def thread(self) -> threading.Thread | None:
        """The thread running the current loop (None before first use)."""
        return self._gen.thread if self._gen is not None else None

    def _own_loop_is(self, loop: asyncio.AbstractEventLoop) -> bool:
        gen = self._gen
        return gen is not None and gen.pid == os.getpid() and gen.loop is loop

    def reset_after_fork(self) -> None:
        """Forget a loop inherited from the parent; the next use starts a fresh one.

        ``loop()`` already checks the pid; this also replaces the lock, which may have been held
        by another parent thread at the moment of fork and would then never be released.
        """
        self._lock = threading.Lock()
        gen = self._gen
        if gen is not None and gen.pid != os.getpid():
            self._abandoned.append(gen)
            self._gen = None

    # -- running coroutines -----------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run ``coro`` on this process's loop and block the calling (plain) thread for it.

        Exceptions keep their type. If the wait is interrupted (Celery's soft time limit, a
        KeyboardInterrupt) the coroutine is cancelled rather than left running unobserved.
        """
        if _running_loop() is not None:
            coro.close()  # never awaited; closing avoids a "coroutine was never awaited" warning
            raise RuntimeError(_IN_LOOP_MESSAGE.format(what="WorkerLoop.run()"))
        future = asyncio.run_coroutine_threadsafe(_with_timeout(coro, timeout), self.loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def arun(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Await ``coro`` on this process's loop from any loop without blocking it."""
        if self._own_loop_is(asyncio.get_running_loop()):
            return await _with_timeout(coro, timeout)
        future = asyncio.run_coroutine_threadsafe(_with_timeout(coro, timeout), self.loop())
        # Cancelling the wrapper cancels the concurrent future, which cancels the task.
        return await asyncio.wrap_future(future)

    # -- per-process resources --------------------------------------------------------------

    def register_resource(
        self, name: str, factory: Callable[[], Any], closer: Closer | None = None
    ) -> None:
        """Declare an object that lives on this loop, one per process.

        ``factory`` is called on the loop thread at first use (so anything that binds to the
        running loop, like an httpx.AsyncClient's pool, binds to this one); ``closer`` is awaited
        on the loop at shutdown. A child process builds its own; it never reuses the parent's.
        Registering a name again replaces the factory for objects not created yet.
        """
        self._factories[name] = (factory, closer)

    def resource(self, name: str) -> Any:
        """The process's object for ``name``, created on the loop thread on first use."""
        if name not in self._factories:
            raise KeyError(f"no resource registered as {name!r}")
        running = _running_loop()
        if running is not None:
            if not self._own_loop_is(running):
                # The object is bound to the worker loop; using it from another loop breaks
                # (httpx pools, anyio locks). Handlers that need it must run on the worker loop.
                raise RuntimeError(
                    f"resource {name!r} lives on the worker loop but was requested from another "
                    "event loop; run the code with `await worker_loop.arun(...)`"
                )
            return self._create_here(name)
        loop = self.loop()
        return asyncio.run_coroutine_threadsafe(self._acreate(name), loop).result()

    async def _acreate(self, name: str) -> Any:
        return self._create_here(name)

    def _create_here(self, name: str) -> Any:
        gen = self._gen
        if gen is None or gen.loop is not asyncio.get_running_loop():
            # shutdown() detached this loop while a handler on it was still asking.
            raise RuntimeError(f"resource {name!r} requested while the worker loop shuts down")
        if name not in gen.resources:
            factory, _ = self._factories[name]
            gen.resources[name] = factory()
        return gen.resources[name]

    # -- shutdown ---------------------------------------------------------------------------

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel pending tasks, close resources (on the loop), stop the loop, join the thread.

        Safe to call when nothing was started, more than once, and in a forked child that never
        used its loop. A later ``loop()`` starts a new one.
        """
        with self._lock:
            gen = self._gen
            self._gen = None
        if gen is None:
            return
        if gen.pid != os.getpid():
            self._abandoned.append(gen)  # the parent's: not ours to close
            return
        if not gen.thread.is_alive():
            return
        closing = asyncio.run_coroutine_threadsafe(self._close(gen, timeout), gen.loop)
        if threading.current_thread() is gen.thread:
            # Called from a handler on the loop itself: cannot wait for ourselves.
            closing.add_done_callback(lambda _: gen.loop.call_soon_threadsafe(gen.loop.stop))
            return
        try:
            closing.result(timeout=timeout * 2)
        except Exception:
            logger.exception("closing the worker event loop did not finish cleanly")
        gen.loop.call_soon_threadsafe(gen.loop.stop)
        gen.thread.join(timeout)
        if not gen.thread.is_alive():
            gen.loop.close()

    async def _close(self, gen: _Generation, timeout: float) -> None:
        # Handlers first: they may still be using the resources we are about to close.
        me = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not me]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        # Close in reverse creation order: later resources may depend on earlier ones.
        for name, obj in reversed(list(gen.resources.items())):
            _, closer = self._factories.get(name, (None, None))
            if closer is None:
                continue
            try:
                await asyncio.wait_for(closer(obj), timeout)
            except Exception:
                logger.exception("closing worker resource %r failed", name)
        gen.resources.clear()
        await gen.loop.shutdown_asyncgens()


# Every WorkerLoop gets its lock replaced in a forked child (see reset_after_fork). A WeakSet so
# short-lived instances made by tests are not kept alive by the fork hook.
_instances: weakref.WeakSet[WorkerLoop] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for instance in list(_instances):
        instance.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

worker_loop = WorkerLoop()


# -- calling handlers from tasks --------------------------------------------------------------


def run_handler(
    func: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any
) -> Any:
    """Call a handler from a Celery task's thread and return its result.

    Coroutine functions run on ``worker_loop`` with ``timeout`` enforced inside the loop; plain
    functions are called right here (``timeout`` does not apply: a thread cannot be interrupted,
    use prefork's ``time_limit`` for those). Inside a running loop (an eager task called from an
    async route) a coroutine handler raises RuntimeError: await ``arun_handler`` instead.
    """
    if inspect.iscoroutinefunction(func):
        # Checked before calling func, so no coroutine object is created and then dropped.
        if _running_loop() is not None:
            raise RuntimeError(_IN_LOOP_MESSAGE.format(what=f"run_handler({_name(func)})"))
        return worker_loop.run(func(*args, **kwargs), timeout=timeout)
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):  # a sync wrapper that returns a coroutine
        return worker_loop.run(_await(result), timeout=timeout)
    return result


async def arun_handler(
    func: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any
) -> Any:
    """Call a handler from code already running in a loop, without blocking that loop.

    Coroutine functions are awaited directly in the caller's loop; plain functions run in a
    worker thread (anyio's pool) so they cannot stall it.
    """
    if inspect.iscoroutinefunction(func):
        return await _with_timeout(func(*args, **kwargs), timeout)
    result = await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))
    if inspect.isawaitable(result):
        return await _with_timeout(result, timeout)
    return result


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


# -- Celery signals ---------------------------------------------------------------------------

_UID = "ghapp_celery.tasks.loop"


def install_signal_handlers(celery_app: Any = None) -> None:
    """Tie ``worker_loop`` to the worker's life: fresh after fork, closed at shutdown.

    Celery's worker signals are process-wide, so ``celery_app`` is accepted for symmetry but
    not needed. Idempotent: ``dispatch_uid`` makes a second call replace nothing and add nothing.
    """
    del celery_app
    from celery import signals  # only tasks/ imports celery; keep loop.py importable without

    signals.worker_process_init.connect(
        _on_process_init, weak=False, dispatch_uid=f"{_UID}.process_init"
    )
    signals.worker_process_shutdown.connect(
        _on_shutdown, weak=False, dispatch_uid=f"{_UID}.process_shutdown"
    )
    signals.worker_shutdown.connect(_on_shutdown, weak=False, dispatch_uid=f"{_UID}.shutdown")


def _on_process_init(**_: Any) -> None:
    # Lazily: a prefork child that never runs a coroutine handler never starts a thread.
    worker_loop.reset_after_fork()


def _on_shutdown(**_: Any) -> None:
    worker_loop.shutdown()
