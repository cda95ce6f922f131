"""The package's warnings and errors show where users run things, without any logging set-up.

A user's ``myapp.py`` runs under a real ``uvicorn myapp:app`` and a real ``celery -A
myapp:celery worker`` (subprocesses, their stderr read back as a terminal shows it):

- with no logging configured, the start-up warning of docs/configuration.md (no webhook
  secret) and a failing inline handler's error, the one its 500 "see the server log" points
  to, are on uvicorn's stderr in uvicorn's format; the worker shows the same warning and a
  background handler's failure;
- with the application's own ``logging.basicConfig``, its handler writes each of those lines,
  once: the package's fallback (ghapp_celery/_fallback_log.py) writes none of them again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ghapp_celery.cli import sample_payload
from ghapp_celery.webhooks import signed_request
from tests._redis import free_port
from tests._served import Served
from tests._venvs import clean_env

MYAPP = """\
{preamble}
from fastapi import FastAPI
from ghapp_celery import Event, GitHubApp

app = FastAPI()
github_app = GitHubApp(app)
celery = github_app.celery


@github_app.on("ping")
def broken():
    raise RuntimeError("inline handler broke")


@github_app.on("issues.opened", background=True)
def broken_in_the_worker(event: Event) -> None:
    raise RuntimeError("background handler broke")
"""
NO_SECRET = "No webhook secret is set: unsigned deliveries are accepted."
BASIC_CONFIG = "import logging\nlogging.basicConfig(level=logging.INFO)\n"


@dataclass
class Running:
    url: str
    web: Served
    worker: Served

    def post(self, sample: str) -> tuple[str, httpx.Response]:
        """Post a bundled sample delivery (the app has no secret: any signature is accepted)."""
        event, payload = sample_payload(sample, installation_id=1)
        body, headers = signed_request(event, payload, secret="unchecked")
        response = httpx.post(self.url, content=body, headers=headers, timeout=30)
        return headers["X-GitHub-Delivery"], response


@contextmanager
def running_app(workdir: Path, preamble: str = "") -> Iterator[Running]:
    """``uvicorn myapp:app`` and ``celery -A myapp:celery worker`` as a user starts them, on the
    embedded broker and store in ``workdir``; no GITHUBAPP_* or logging configuration."""
    (workdir / "myapp.py").write_text(MYAPP.format(preamble=preamble))
    env = clean_env(Path(sys.executable).parent, {"GITHUBAPP_DATA_DIR": str(workdir / ".ghapp")})
    port = free_port()
    web_command = [sys.executable, "-m", "uvicorn", "myapp:app", "--port", str(port)]
    worker_command = [
        sys.executable, "-m", "celery", "-A", "myapp:celery", "worker",
        "-P", "threads", "-Q", "github.issues,github.default",
    ]  # fmt: skip
    with (
        Served("web", web_command, workdir, env) as web,
        Served("worker", worker_command, workdir, env) as worker,
    ):
        web.wait_for_line("Application startup complete.")
        yield Running(f"http://127.0.0.1:{port}/webhooks/github/", web, worker)


def test_plain_uvicorn_and_worker_show_the_warnings_and_handler_failures(tmp_path: Path) -> None:
    with running_app(tmp_path) as app:
        delivery_id, response = app.post("ping")
        assert response.status_code == 500
        assert response.json()["description"].endswith("see the server log")
        # The caller gets no traceback and no exception text; the log gets both.
        assert "Traceback" not in response.text and "broke" not in response.text
        failure = "ERROR:    ghapp_celery.intake: Handler myapp.broken failed for delivery "
        app.web.wait_for_line(f"{failure}{delivery_id} (ping)\nTraceback (most recent call")
        app.web.wait_for_line("RuntimeError: inline handler broke")

        _, response = app.post("issues.opened")
        assert response.status_code == 202, response.text
        app.worker.wait_for_line("failed permanently: RuntimeError: background handler broke")
        web, worker = app.web.output(), app.worker.output()

    # At start-up, before uvicorn's own first line; in the worker before Celery set up logging.
    assert web.startswith(f"WARNING:  ghapp_celery: {NO_SECRET}")
    assert f"WARNING:  ghapp_celery: {NO_SECRET}" in worker
    # Each once: under the worker, Celery's root handler writes the failure and the fallback
    # stays silent.
    assert web.count(NO_SECRET) == 1 and worker.count(NO_SECRET) == 1
    assert web.count("Handler myapp.broken failed") == 1
    assert worker.count("failed permanently") == 1
    assert "ERROR:    ghapp_celery.tasks" not in worker


def test_logging_the_application_configures_writes_each_line_once(tmp_path: Path) -> None:
    with running_app(tmp_path, preamble=BASIC_CONFIG) as app:
        delivery_id, response = app.post("ping")
        assert response.status_code == 500
        app.web.wait_for_line(
            f"ERROR:ghapp_celery.intake:Handler myapp.broken failed for delivery {delivery_id}"
        )
        app.web.wait_for_line("RuntimeError: inline handler broke")
        assert app.post("issues.opened")[1].status_code == 202
        app.worker.wait_for_line("failed permanently: RuntimeError: background handler broke")
        web, worker = app.web.output(), app.worker.output()

    # basicConfig's format, not the fallback's, and one line per record.
    assert f"WARNING:ghapp_celery:{NO_SECRET}" in web
    assert "WARNING:  ghapp_celery:" not in web and "ERROR:    ghapp_celery" not in web
    assert web.count(NO_SECRET) == 1 and worker.count(NO_SECRET) == 1
    assert web.count("Handler myapp.broken failed") == 1
    assert web.count("RuntimeError: inline handler broke") == 1
    assert worker.count("failed permanently") == 1
