"""``GET /healthz`` and ``GET /readyz`` over real HTTP, with the store and the broker up and
down: a real PostgreSQL stopped, a Redis URL nobody listens on."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from ghapp_celery import Event, GitHubApp
from ghapp_celery.config import Settings
from ghapp_celery.testing import AppFactory, serve
from tests._postgres import PostgresServer, postgres_server  # noqa: F401  (fixture)
from tests._redis import free_port


def build(factory: AppFactory, background: bool = True, **settings: Any) -> GitHubApp:
    def setup(app: GitHubApp) -> None:
        if background:

            @app.on("issues.opened", background=True)
            def later(event: Event) -> None:
                return None

        @app.on("ping")
        def pong() -> str:
            return "pong"

    options = {"data_dir": factory.data_dir / "app", **settings}
    return factory(setup=setup, settings=Settings(**options))


def test_both_answer_when_the_store_and_the_broker_do(ghapp_app_factory: AppFactory) -> None:
    app = build(ghapp_app_factory)
    with serve(ghapp_app_factory.web_of(app)) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "store": "ok", "broker": "ok"}


def test_an_inline_only_app_needs_neither(ghapp_app_factory: AppFactory) -> None:
    app = build(ghapp_app_factory, background=False)
    with serve(ghapp_app_factory.web_of(app)) as url:
        ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "store": "not used", "broker": "not used"}


def test_an_unreachable_broker_is_503_naming_it_and_nothing_else(
    ghapp_app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    app = build(ghapp_app_factory)
    with serve(ghapp_app_factory.web_of(app)) as url:
        started = time.monotonic()
        ready = httpx.get(f"{url}/readyz", timeout=10)
        took = time.monotonic() - started
        assert httpx.get(f"{url}/healthz").status_code == 200  # alive all the same
    assert ready.status_code == 503
    body = ready.json()
    assert body["error"] == "not_ready" and body["broker"] == "unavailable"
    assert body["store"] == "ok"
    assert "Connection" not in ready.text and "redis://" not in ready.text  # no exception text
    assert took < 5  # within the check's own timeout, well inside a probe's


def test_the_store_going_away_and_coming_back(
    ghapp_app_factory: AppFactory,
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    pg = postgres_server
    url_db = pg.create_database("ghapp_health")
    app = build(ghapp_app_factory, database_url=url_db)
    app.store.upgrade()
    with serve(ghapp_app_factory.web_of(app)) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        pg.stop()
        try:
            time.sleep(1.1)  # past the cached answer
            down = httpx.get(f"{url}/readyz", timeout=10)
            assert down.status_code == 503, down.text
            assert down.json()["store"] == "unavailable"
            assert "psycopg" not in down.text and "5432" not in down.text
        finally:
            pg.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the store came back but /readyz did not"
            time.sleep(0.3)


def test_probes_every_few_ms_share_one_check(
    ghapp_app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build(ghapp_app_factory)
    pings: list[float] = []
    real_ping = app.store.ping

    def counted() -> None:
        pings.append(time.monotonic())
        real_ping()

    monkeypatch.setattr(app.store, "ping", counted)
    with serve(ghapp_app_factory.web_of(app)) as url, httpx.Client() as client:
        started = time.monotonic()
        answers = [client.get(f"{url}/readyz").status_code for _ in range(20)]
        took = time.monotonic() - started
    assert answers == [200] * 20
    # One round trip per second of probing at most (the answer is reused for 1 s).
    assert len(pings) <= int(took) + 1, (len(pings), took)


def test_the_paths_can_move_or_go(ghapp_app_factory: AppFactory) -> None:
    app = build(ghapp_app_factory, health_path="/live", ready_path="")
    with serve(ghapp_app_factory.web_of(app)) as url:
        assert httpx.get(f"{url}/live").json() == {"status": "ok"}
        assert httpx.get(f"{url}/healthz").status_code == 404
        assert httpx.get(f"{url}/readyz").status_code == 404
