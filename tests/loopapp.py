"""The Celery app tests/test_loop_workers.py runs in real worker subprocesses.

Each task wraps a coroutine handler with ``run_handler``, as ghapp_celery's handler tasks do,
and returns what it observed (pids, loop ids, thread ids) through the SQLite result backend.
Side effects that must survive the worker (resource creation and closing, cancellation) are
appended to files in ``$LOOPAPP_DIR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import kombu.transport.sqlalchemy
from celery import Celery

from ghapp_celery.tasks.loop import install_signal_handlers, run_handler, worker_loop
from tests._workers import install_ready_marker

# On the transport class: a "polling_interval" in broker_transport_options would also be handed
# to sqlalchemy.create_engine() by this transport and break the worker.
kombu.transport.sqlalchemy.Transport.polling_interval = 0.05

DIR = Path(os.environ.get("LOOPAPP_DIR", "."))
REQUEST = contextvars.ContextVar("REQUEST", default="unset")

celery_app = Celery("loopapp", set_as_current=False)
celery_app.conf.update(
    # create_engine() options: wait for SQLite's write lock instead of failing at once.
    broker_transport_options={"connect_args": {"timeout": 30}},
    database_engine_options={"connect_args": {"timeout": 30}},
    result_expires=None,  # no celery.backend_cleanup task
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
install_signal_handlers(celery_app)
install_ready_marker()


def _record(filename: str, line: str) -> None:
    with open(DIR / filename, "a") as fh:
        fh.write(line + "\n")


def _make_client() -> httpx.AsyncClient:
    _record("resources.log", f"created {os.getpid()}")
    return httpx.AsyncClient()


async def _close_client(client: httpx.AsyncClient) -> None:
    await client.aclose()
    _record("resources.log", f"closed {os.getpid()} {client.is_closed}")


worker_loop.register_resource("http", _make_client, _close_client)

if os.environ.get("LOOPAPP_PRESTART"):
    # Start the loop (and a resource on it) in the main worker process at import, i.e. BEFORE
    # prefork forks: the children must abandon this loop and make their own.
    worker_loop.loop()
    worker_loop.resource("http")


class LoopAppError(Exception):
    """Raised by a handler; must reach the caller with this type."""


def _observe() -> dict[str, Any]:
    thread = worker_loop.thread
    assert thread is not None and thread.native_id is not None
    pid = os.getpid()
    return {
        "pid": pid,
        "ppid": os.getppid(),
        "loop_pid": worker_loop.created_pid,
        "loop_id": id(asyncio.get_running_loop()),
        # A thread started in this process appears under /proc/<pid>/task; a parent's does not.
        "loop_thread_here": os.path.exists(f"/proc/{pid}/task/{thread.native_id}"),
        "on_loop_thread": threading.current_thread() is thread,
        "request": REQUEST.get(),
    }


async def _echo(value: Any) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"value": value, **_observe()}


@celery_app.task(name="loop.echo", shared=False)
def echo(value: Any) -> Any:
    REQUEST.set(f"request-{value}")  # set in the task thread; the handler must see it
    return run_handler(_echo, value)


async def _fail(message: str) -> None:
    await asyncio.sleep(0)
    raise LoopAppError(message)


@celery_app.task(name="loop.fail", shared=False)
def fail(message: str) -> None:
    run_handler(_fail, message)


async def _slow(seconds: float, tag: str) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _record("cancelled.log", tag)
        raise
    return "finished"


@celery_app.task(name="loop.slow", shared=False)
def slow(seconds: float, tag: str, timeout: float | None = None) -> Any:
    return run_handler(_slow, seconds, tag, timeout=timeout)


@celery_app.task(name="loop.soft_limited", soft_time_limit=0.5, shared=False)
def soft_limited(seconds: float, tag: str) -> Any:
    # prefork delivers the soft limit as an exception in this thread while it waits in run().
    return run_handler(_slow, seconds, tag)


# Barrier state per group; only ever touched on the loop thread, so it needs no lock.
_groups: dict[str, dict[str, Any]] = {}


async def _gather(group: str, expected: int, hold: float) -> dict[str, Any]:
    state = _groups.setdefault(group, {"active": 0, "max": 0, "all_in": asyncio.Event()})
    start = time.time()
    state["active"] += 1
    state["max"] = max(state["max"], state["active"])
    if state["active"] >= expected:
        state["all_in"].set()
    # Wait for the others so the overlap does not depend on how fast the broker delivers;
    # if handlers were serialised this times out and "max" stays below ``expected``.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state["all_in"].wait(), 20)
    await asyncio.sleep(hold)
    state["active"] -= 1
    return {"start": start, "end": time.time(), "max_active": state["max"], **_observe()}


@celery_app.task(name="loop.gather", shared=False)
def gather(group: str, expected: int, hold: float) -> Any:
    return run_handler(_gather, group, expected, hold)


async def _use_client() -> dict[str, Any]:
    client = worker_loop.resource("http")
    return {"client_id": id(client), "closed": client.is_closed, **_observe()}


@celery_app.task(name="loop.use_client", shared=False)
def use_client() -> Any:
    result = run_handler(_use_client)
    # From the task's own thread too: the same object, created on (and owned by) the loop.
    result["client_id_from_task_thread"] = id(worker_loop.resource("http"))
    return result
