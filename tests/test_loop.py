"""The per-process event loop (ghapp_celery.tasks.loop) in process, and in eager tasks.

The same loop inside real Celery workers is tested in tests/test_loop_workers.py.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from celery import Celery, signals

from ghapp_celery.exceptions import GitHubAppError
from ghapp_celery.tasks import loop as loop_module
from ghapp_celery.tasks.loop import (
    HandlerTimeout,
    WorkerLoop,
    arun_handler,
    install_signal_handlers,
    run_handler,
    worker_loop,
)

# -- in-process ---------------------------------------------------------------------------------


@pytest.fixture
def wl() -> Iterator[WorkerLoop]:
    instance = WorkerLoop(name="test-loop")
    yield instance
    instance.shutdown()


async def _add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


class CustomError(Exception):
    pass


async def _raise_custom() -> None:
    await asyncio.sleep(0)
    raise CustomError("boom")


def test_run_returns_value_from_loop_thread(wl: WorkerLoop) -> None:
    async def where() -> tuple[int | None, bool]:
        return threading.get_ident(), threading.current_thread() is wl.thread

    assert wl.run(_add(2, 3)) == 5
    ident, on_loop = wl.run(where())
    assert on_loop and ident != threading.get_ident()
    assert wl.created_pid == os.getpid()


def test_run_keeps_exception_type(wl: WorkerLoop) -> None:
    with pytest.raises(CustomError, match="boom"):
        wl.run(_raise_custom())


def test_timeout_raises_handler_timeout_and_cancels(wl: WorkerLoop) -> None:
    cancelled = threading.Event()

    async def sleeper() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(HandlerTimeout) as info:
        wl.run(sleeper(), timeout=0.1)
    assert isinstance(info.value, GitHubAppError)
    assert cancelled.wait(5)


def test_handlers_own_timeout_error_is_not_a_handler_timeout(wl: WorkerLoop) -> None:
    async def raises_timeout() -> None:
        raise TimeoutError("from the handler")

    with pytest.raises(TimeoutError, match="from the handler") as info:
        wl.run(raises_timeout(), timeout=5)
    assert not isinstance(info.value, HandlerTimeout)


def test_run_inside_a_running_loop_raises_instead_of_deadlocking(wl: WorkerLoop) -> None:
    async def caller() -> None:
        coro = _add(1, 1)
        with pytest.raises(RuntimeError, match="await"):
            wl.run(coro)
        # Closed, so no "coroutine was never awaited" warning.
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    asyncio.run(asyncio.wait_for(caller(), 5))


def test_run_on_the_worker_loop_thread_itself_raises(wl: WorkerLoop) -> None:
    async def nested() -> str:
        try:
            wl.run(_add(1, 1))
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "await" in wl.run(nested(), timeout=5)


def test_arun_from_a_foreign_loop_and_from_its_own(wl: WorkerLoop) -> None:
    async def where() -> bool:
        return threading.current_thread() is wl.thread

    async def from_foreign() -> tuple[int, bool]:
        return await wl.arun(_add(20, 22)), await wl.arun(where())

    assert asyncio.run(from_foreign()) == (42, True)

    async def from_own() -> int:
        return await wl.arun(_add(1, 2), timeout=5)

    assert wl.run(from_own()) == 3
    with pytest.raises(HandlerTimeout):
        asyncio.run(wl.arun(asyncio.sleep(5), timeout=0.1))


def test_interrupted_caller_cancels_the_coroutine(wl: WorkerLoop) -> None:
    """A signal-raised exception while run() waits (how prefork's soft time limit arrives)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    cancelled = threading.Event()

    class Interrupted(Exception):
        pass

    async def sleeper() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Interrupted):
            wl.run(sleeper())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert cancelled.wait(5)


def test_resource_created_once_on_the_loop_and_closed_at_shutdown(wl: WorkerLoop) -> None:
    events: list[tuple[str, int | None]] = []

    class Thing:
        closed = False

    def factory() -> Thing:
        events.append(("created", threading.get_ident()))
        return Thing()

    async def closer(thing: Thing) -> None:
        await asyncio.sleep(0)
        thing.closed = True
        events.append(("closed", threading.get_ident()))

    wl.register_resource("thing", factory, closer)
    with ThreadPoolExecutor(10) as pool:
        things = list(pool.map(lambda _: wl.resource("thing"), range(50)))

    async def from_loop() -> Any:
        return wl.resource("thing")

    things.append(wl.run(from_loop()))
    assert len({id(t) for t in things}) == 1
    assert wl.thread is not None
    loop_ident = wl.thread.ident
    assert events == [("created", loop_ident)]

    wl.shutdown()
    assert things[0].closed
    assert events == [("created", loop_ident), ("closed", loop_ident)]
    assert wl.thread is None
    assert wl.resource("thing") is not things[0]  # a new loop gets a new one


def test_resource_from_a_foreign_loop_is_refused(wl: WorkerLoop) -> None:
    wl.register_resource("thing", object)

    async def foreign() -> None:
        wl.resource("thing")

    with pytest.raises(RuntimeError, match="worker loop"):
        asyncio.run(foreign())
    with pytest.raises(KeyError):
        wl.resource("missing")


def test_shutdown_cancels_handlers_still_running(wl: WorkerLoop) -> None:
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    outcome: list[BaseException] = []

    def caller() -> None:
        try:
            wl.run(forever())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(5)
    wl.shutdown(timeout=2)
    thread.join(5)
    assert not thread.is_alive()
    assert outcome and type(outcome[0]).__name__ == "CancelledError"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_abandons_the_parents_loop_and_starts_its_own(wl: WorkerLoop) -> None:
    parent_loop = wl.loop()
    wl.register_resource("thing", object)
    parent_thing = wl.resource("thing")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, then leave without running pytest's cleanup
        try:
            value = wl.run(_add(1, 2), timeout=5)
            report = [
                value == 3,
                wl.loop() is not parent_loop,
                wl.created_pid == os.getpid(),
                wl.resource("thing") is not parent_thing,
            ]
            os.write(write_fd, repr(report).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd) as fh:
        child_report = fh.read()
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_report == repr([True, True, True, True])
    assert wl.loop() is parent_loop  # the parent's loop was left alone


def test_run_handler_and_arun_handler(global_loop: WorkerLoop) -> None:
    def plain(x: int) -> tuple[int, str]:
        return x * 2, threading.current_thread().name

    assert run_handler(_add, 1, 2) == 3
    assert run_handler(plain, 4) == (8, threading.current_thread().name)  # in the caller

    async def in_a_loop() -> None:
        with pytest.raises(RuntimeError, match="await it instead"):
            run_handler(_add, 1, 2)
        assert run_handler(plain, 1)[0] == 2  # plain functions are fine anywhere
        assert await arun_handler(_add, 1, 2) == 3
        value, thread_name = await arun_handler(plain, 5)
        assert value == 10 and thread_name != threading.current_thread().name
        with pytest.raises(HandlerTimeout):
            await arun_handler(asyncio.sleep, 5, timeout=0.1)

    asyncio.run(asyncio.wait_for(in_a_loop(), 10))


def test_install_signal_handlers_is_idempotent() -> None:
    install_signal_handlers()
    install_signal_handlers(Celery(set_as_current=False))
    for signal_, uid in [
        (signals.worker_process_init, "process_init"),
        (signals.worker_process_shutdown, "process_shutdown"),
        (signals.worker_shutdown, "shutdown"),
    ]:
        keys = [key for key, _ in signal_.receivers if key[0] == f"{loop_module._UID}.{uid}"]
        assert len(keys) == 1, (signal_, keys)


@pytest.fixture
def global_loop() -> Iterator[WorkerLoop]:
    """The process-wide ``worker_loop`` (what run_handler uses), shut down after the test."""
    yield worker_loop
    worker_loop.shutdown()


# -- eager tasks --------------------------------------------------------------------------------


@pytest.fixture
def eager_app(global_loop: WorkerLoop) -> Celery:
    app = Celery("eager", set_as_current=False)
    app.conf.update(
        task_always_eager=True, broker_url="memory://", result_backend="cache+memory://"
    )
    return app


def test_eager_task_outside_a_loop_runs_on_the_worker_loop(eager_app: Celery) -> None:
    @eager_app.task(shared=False)
    def task(a: int, b: int) -> int:
        return run_handler(_add, a, b)  # type: ignore[no-any-return]

    assert task.delay(2, 2).get(timeout=10) == 4


def test_eager_task_inside_a_loop_fails_fast_and_arun_handler_works(eager_app: Celery) -> None:
    """An eager task called from an async route runs in the route's thread, inside its loop:
    blocking there would deadlock, so run_handler refuses and the caller must await."""

    @eager_app.task(shared=False)
    def task(a: int, b: int) -> int:
        return run_handler(_add, a, b)  # type: ignore[no-any-return]

    async def route() -> None:
        result = task.delay(1, 2)  # does not block or hang: the failure is stored at once
        assert result.failed()
        with pytest.raises(RuntimeError, match="await"):
            result.get(timeout=5)
        eager_app.conf.task_eager_propagates = True
        with pytest.raises(RuntimeError, match="await"):
            task.delay(1, 2)
        assert await arun_handler(_add, 1, 2) == 3

    asyncio.run(asyncio.wait_for(route(), 10))
