"""GitHubApp's lazy parts: each is created exactly once, even when threads race to read it.

``Lazy`` (ghapp_celery._lazy) is the one place that creates a part; these tests race threads on
the helper and on every lazy part of a real GitHubApp, the scheduler among them (it was once
created without the lock its siblings took).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ghapp_celery import GitHubApp, Settings
from ghapp_celery._lazy import Lazy

THREADS = 16


def race(read: Callable[[], object]) -> list[object]:
    """Call ``read`` from THREADS threads released at the same instant; return the results."""
    barrier = threading.Barrier(THREADS)
    results: list[object] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            value = read()
        except BaseException as exc:  # reported below, not lost in a thread
            with guard:
                errors.append(exc)
            return
        with guard:
            results.append(value)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len(results) == THREADS
    return results


class Counting:
    """A factory that is slow enough for every racing thread to arrive while it runs."""

    def __init__(self, make: Callable[[], object] = object) -> None:
        self.calls = 0
        self._make = make

    def __call__(self) -> object:
        self.calls += 1
        time.sleep(0.05)
        return self._make()


def test_racing_threads_create_a_part_exactly_once() -> None:
    factory = Counting()
    part: Lazy[object] = Lazy(factory, threading.RLock())
    results = race(part.get)
    assert factory.calls == 1
    assert all(value is results[0] for value in results)
    assert part.peek() is results[0]


def test_a_part_may_read_a_sibling_under_the_same_lock() -> None:
    lock = threading.RLock()
    store: Lazy[object] = Lazy(Counting(), lock)
    scheduler_factory = Counting(lambda: ("scheduler", store.get()))
    scheduler: Lazy[object] = Lazy(scheduler_factory, lock)
    results = race(scheduler.get)
    assert scheduler_factory.calls == 1
    assert all(value is results[0] for value in results)


def test_a_failed_creation_keeps_nothing_and_the_next_read_retries() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("broker down")
        return "part"

    part: Lazy[str] = Lazy(flaky, threading.RLock())
    with pytest.raises(RuntimeError):
        part.get()
    assert not part.created
    assert part.peek() is None
    assert part.get() == "part"
    assert part.get() == "part"
    assert len(attempts) == 2


def test_a_part_may_be_none_and_reset_forgets_it() -> None:
    factory = Counting(lambda: None)
    part: Lazy[object] = Lazy(factory, threading.RLock())
    assert part.get() is None
    assert part.get() is None
    assert part.created
    assert factory.calls == 1
    part.reset()
    assert not part.created
    assert part.get() is None
    assert factory.calls == 2


def counted(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[object]:
    """Replace ``module.name`` (a class) by a slow subclass that records each instance."""
    made: list[object] = []
    original = getattr(module, name)

    class Slow(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(self)
            time.sleep(0.05)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(module, name, Slow)
    return made


@pytest.fixture
def github_app(tmp_path: Path) -> GitHubApp:
    return GitHubApp(settings=Settings(data_dir=tmp_path))


def test_racing_threads_create_the_scheduler_once(
    github_app: GitHubApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghapp_celery.tasks import scheduler

    made = counted(monkeypatch, scheduler, "CeleryScheduler")
    results = race(lambda: github_app.scheduler)
    assert len(made) == 1
    assert all(value is made[0] for value in results)
    # The scheduler was built on the app's one Celery app and store.
    assert github_app.scheduler.celery is github_app.celery
    assert github_app.scheduler.store is github_app.store


def test_racing_threads_create_the_store_once(
    github_app: GitHubApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ghapp_celery.store

    made = counted(monkeypatch, ghapp_celery.store, "DeliveryStore")
    results = race(lambda: github_app.store)
    assert len(made) == 1
    assert all(value is made[0] for value in results)


def test_racing_threads_create_the_celery_app_once(
    github_app: GitHubApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghapp_celery.tasks import celery_app

    calls: list[object] = []
    original = celery_app.make_celery

    def slow_make_celery(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        made = original(*args, **kwargs)
        calls.append(made)
        return made

    monkeypatch.setattr(celery_app, "make_celery", slow_make_celery)
    results = race(lambda: github_app.celery)
    assert len(calls) == 1
    assert all(value is calls[0] for value in results)


def test_racing_threads_create_the_credentials_once(
    github_app: GitHubApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghapp_celery.github import credentials

    made = counted(monkeypatch, credentials, "GitHubAppAuth")
    results = race(lambda: github_app.auth)
    assert len(made) == 1
    assert all(value is made[0] for value in results)


def test_racing_threads_create_the_intake_and_oauth_integration_once(
    github_app: GitHubApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ghapp_celery.app
    from ghapp_celery.oauth import integration

    intakes = counted(monkeypatch, ghapp_celery.app, "WebhookIntake")
    integrations = counted(monkeypatch, integration, "OAuthIntegration")
    assert all(value is intakes[0] for value in race(lambda: github_app.intake))
    assert all(value is integrations[0] for value in race(lambda: github_app.oauth_integration))
    assert len(intakes) == 1
    assert len(integrations) == 1
