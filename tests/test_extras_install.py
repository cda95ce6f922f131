"""Each extra, installed alone into a fresh venv the way docs/production.md says, serves what it
is for: the base install a web process and a worker on the embedded SQLite broker and store,
``[redis]`` a worker on a real redis-server, ``[postgres]`` the store migrated on a real
PostgreSQL, ``[oauth]`` the login route, ``[prometheus]`` the web app's and the worker's
metrics, ``[otel]`` a delivery's trace exported over OTLP, ``[observability]`` both.

The development install has every extra plus pytest and friends, so a dependency the package
forgot to declare is found there anyway (``packaging``, which kombu's Redis transport imports,
came in with pytest). Here each environment holds the wheel and the dependencies it declares
for that extra, nothing else (tests/_venvs.py), and the app runs from the environment's own
``uvicorn``, ``celery`` and ``ghapp-celery`` commands, with a user's ``myapp.py``.
"""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests._otlp import OtlpReceiver
from tests._postgres import PostgresServer, postgres_server  # noqa: F401  (fixture)
from tests._redis import free_port, redis_server
from tests._served import Served
from tests._venvs import REPO_ROOT, Install, build_wheelhouse, clean_env, start_install

# The first test also waits for the wheelhouse (about 40 s, most of it the index).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: Every extra a user installs, and the test below that serves it ("" is the base install).
EXTRAS = ("", "redis", "postgres", "oauth", "prometheus", "otel", "observability")
#: Extras for working on the package itself, not for running an app.
DEVELOPMENT_EXTRAS = {"dev", "docs"}

SECRET = "extras-secret"
MYAPP = """\
from fastapi import FastAPI
from ghapp_celery import Event, GitHubApp

app = FastAPI()
github_app = GitHubApp(app)
celery = github_app.celery


@github_app.on("issues.opened", background=True)
def welcome(event: Event) -> str:
    return f"welcomed issue #{event.payload['issue']['number']}"
"""


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Install]]:
    """One venv per extra, installed side by side from one wheelhouse; each test waits for it."""
    root = tmp_path_factory.mktemp("extras")
    wheel = build_wheelhouse(root / "wheelhouse", [extra for extra in EXTRAS if extra])
    started = {extra: start_install(wheel, extra, root / (extra or "base")) for extra in EXTRAS}
    yield started
    for install in started.values():
        if install.proc.poll() is None:
            install.proc.kill()
            install.proc.wait()
    print({extra or "base": install.seconds for extra, install in started.items()})


def absent(install: Install, *modules: str) -> list[str]:
    """Which of ``modules`` the environment's Python cannot import (its isolation)."""
    probe = (
        "import importlib.util, sys; "
        "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    )
    done = subprocess.run(
        [install.bin / "python", "-c", probe, *modules],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(install.bin),
    )
    return done.stdout.split()


def serve_one_delivery(
    install: Install,
    workdir: Path,
    config: dict[str, str],
    while_serving: Callable[[int], None] | None = None,
) -> str:
    """``uvicorn myapp:app`` and ``celery -A myapp:celery worker`` from the environment, fed one
    ``issues.opened`` by ``ghapp-celery receive --wait``; returns what receive printed.
    ``while_serving(web_port)`` runs once the run succeeded, before both stop."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "myapp.py").write_text(MYAPP)
    env = clean_env(
        install.bin,
        {"GITHUBAPP_DATA_DIR": str(workdir / ".ghapp"), "GITHUBAPP_WEBHOOK_SECRET": SECRET}
        | config,
    )
    port = free_port()
    bin_dir = install.bin
    worker_command = [
        bin_dir / "celery", "-A", "myapp:celery", "worker", "-P", "threads", "-c", "2",
        "-Q", "github.issues,github.default", "--loglevel", "INFO",
    ]  # fmt: skip
    web_command = [bin_dir / "uvicorn", "myapp:app", "--port", str(port)]
    with (
        Served("worker", [str(arg) for arg in worker_command], workdir, env) as worker,
        Served("web", [str(arg) for arg in web_command], workdir, env) as web,
    ):
        worker.wait_for_line(" ready.")  # a missing transport dependency ends it before this
        web.wait_for_http(f"http://127.0.0.1:{port}/docs")
        done = subprocess.run(
            [bin_dir / "ghapp-celery", "receive", "issues.opened", "--wait", "--timeout", "60",
             "--url", f"http://127.0.0.1:{port}/webhooks/github/"],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        logs = f"--- worker:\n{worker.output()}\n--- web:\n{web.output()}"
        assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{logs}"
        if while_serving is not None:
            while_serving(port)
    assert "github.issues.opened:myapp.welcome: succeeded" in done.stdout, done.stdout
    return done.stdout


def test_every_extra_a_user_installs_is_served_here() -> None:
    """A new extra without a case in this module fails here instead of shipping untested."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["optional-dependencies"]) - DEVELOPMENT_EXTRAS
    assert declared == set(EXTRAS) - {""}


def test_base_install_serves_the_web_app_and_a_worker_on_the_embedded_broker(
    installs: dict[str, Install], tmp_path: Path
) -> None:
    install = installs[""].wait()
    # Nothing of the development install, nor of an extra, is there to hide a gap.
    assert absent(install, "pytest", "redis", "psycopg") == ["pytest", "redis", "psycopg"]

    serve_one_delivery(install, tmp_path, {})
    assert (tmp_path / ".ghapp" / "store.sqlite").exists()


def test_redis_extra_runs_a_worker_on_a_real_redis(
    installs: dict[str, Install], tmp_path: Path
) -> None:
    install = installs["redis"].wait()
    assert absent(install, "pytest", "psycopg") == ["pytest", "psycopg"]

    with redis_server(tmp_path / "redis") as broker:
        serve_one_delivery(install, tmp_path / "app", {"CELERY_BROKER_URL": broker})
    # The broker was Redis, not the embedded SQLite one.
    assert not (tmp_path / "app" / ".ghapp" / "broker.sqlite").exists()


def test_postgres_extra_migrates_and_records_deliveries_in_postgresql(
    installs: dict[str, Install],
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    install = installs["postgres"].wait()
    assert absent(install, "pytest", "redis") == ["pytest", "redis"]
    url = postgres_server.create_database("ghapp_extras")
    config = {"GITHUBAPP_DATABASE_URL": url}

    upgrade = subprocess.run(
        [install.bin / "ghapp-celery", "db", "upgrade"],
        env=clean_env(install.bin, config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert upgrade.stdout.startswith("Store at revision ")

    receive_output = serve_one_delivery(install, tmp_path, config)
    delivery_id = receive_output.split("X-GitHub-Delivery: ")[1].split()[0]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text(
                    "SELECT d.event, r.state FROM ghapp_deliveries d "
                    "JOIN ghapp_handler_runs r ON r.delivery_id = d.id WHERE d.id = :id"
                ),
                {"id": delivery_id},
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in stored] == [("issues", "succeeded")]
    assert not (tmp_path / ".ghapp" / "store.sqlite").exists()


def test_oauth_extra_serves_the_login_route(installs: dict[str, Install], tmp_path: Path) -> None:
    install = installs["oauth"].wait()
    assert absent(install, "pytest", "redis", "psycopg") == ["pytest", "redis", "psycopg"]
    (tmp_path / "myapp.py").write_text(MYAPP)
    port = free_port()
    env = clean_env(
        install.bin,
        {
            "GITHUBAPP_DATA_DIR": str(tmp_path / ".ghapp"),
            "GITHUBAPP_OAUTH_CLIENT_ID": "Iv23extras",
            "GITHUBAPP_OAUTH_CLIENT_SECRET": "extras-client-secret",
            "GITHUBAPP_OAUTH_SESSION_SECRET": "s" * 40,
            "GITHUBAPP_OAUTH_REDIRECT_URI": f"http://127.0.0.1:{port}/auth/github/callback",
        },
    )
    command = [str(install.bin / "uvicorn"), "myapp:app", "--port", str(port)]
    with Served("web", command, tmp_path, env) as web:
        web.wait_for_http(f"http://127.0.0.1:{port}/docs")
        response = httpx.get(f"http://127.0.0.1:{port}/auth/github/login", timeout=10)
        log = web.output()
    assert response.status_code == 200, f"{response.text}\n{log}"
    auth_url = response.json()["auth_url"]
    assert auth_url.startswith("https://github.com/login/oauth/authorize?"), auth_url
    assert "client_id=Iv23extras" in auth_url


def metrics_config() -> tuple[dict[str, str], int]:
    worker_port = free_port()
    config = {
        "GITHUBAPP_METRICS_ENABLED": "true",
        "GITHUBAPP_METRICS_WORKER_PORT": str(worker_port),
        "GITHUBAPP_METRICS_WORKER_HOST": "127.0.0.1",
    }
    return config, worker_port


def check_metrics(worker_port: int) -> Callable[[int], None]:
    def check(web_port: int) -> None:
        web = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=10).text
        assert 'ghapp_webhook_deliveries_total{code="202",event="issues"} 1.0' in web, web
        worker = httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=10).text
        assert 'state="succeeded",task="github.issues.opened:myapp.welcome"} 1.0' in worker

    return check


def check_trace(receiver: OtlpReceiver) -> None:
    spans = receiver.wait_for(lambda got: any(s.name.startswith("run ") for s in got))
    webhook = next(s for s in spans if s.name == "github.webhook issues.opened")
    run = next(s for s in spans if s.name.startswith("run "))
    assert run.trace_id == webhook.trace_id  # one trace, across the broker


def otel_config(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }


def test_prometheus_extra_serves_the_web_and_worker_metrics(
    installs: dict[str, Install], tmp_path: Path
) -> None:
    install = installs["prometheus"].wait()
    assert absent(install, "pytest", "opentelemetry.sdk") == ["pytest", "opentelemetry.sdk"]
    config, worker_port = metrics_config()
    serve_one_delivery(install, tmp_path, config, check_metrics(worker_port))


def test_otel_extra_exports_one_trace_per_delivery(
    installs: dict[str, Install], tmp_path: Path
) -> None:
    install = installs["otel"].wait()
    assert absent(install, "pytest", "prometheus_client") == ["pytest", "prometheus_client"]
    with OtlpReceiver() as receiver:
        serve_one_delivery(install, tmp_path, otel_config(receiver))
        check_trace(receiver)  # flushed when both processes stopped


def test_observability_extra_serves_metrics_and_traces(
    installs: dict[str, Install], tmp_path: Path
) -> None:
    install = installs["observability"].wait()
    config, worker_port = metrics_config()
    with OtlpReceiver() as receiver:
        config |= otel_config(receiver)
        serve_one_delivery(install, tmp_path, config, check_metrics(worker_port))
        check_trace(receiver)
