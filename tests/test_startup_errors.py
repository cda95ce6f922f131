"""A configuration that cannot work stops the web app and the worker at start-up, with one line
saying why, instead of failing at the first GitHub call or delivery.

Driven as users start them: ``python -m uvicorn tests.startupapp:app`` and ``python -m celery
-A tests.startupapp:celery worker`` as subprocesses, configured only by their environment.
Credentials given in code the way fastapi-githubapp 0.2.7 tests give them (a placeholder
``github_app_key=``) still start, with a warning: 0.2.7 accepted them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ghapp_celery import ConfigurationError, GitHubApp
from ghapp_celery.testing import make_private_key
from tests._workers import CeleryWorker, sqlite_broker_url
from tests.test_oauth_harness import free_port

ROOT = Path(__file__).resolve().parent.parent
KEY = make_private_key()
ONE_LINE_KEY = KEY.replace("\n", "\\n")
# Armoured like a key, but the body is not one: a key pasted with its lines mangled.
MANGLED_KEY = "-----BEGIN RSA PRIVATE KEY-----\\nnot a key at all\\n-----END RSA PRIVATE KEY-----"
PASSWORD = "pw-M4RKER-9f2e"

# (what is wrong, environment, what the one line must say)
BROKEN = [
    ("key without id", {"GITHUBAPP_PRIVATE_KEY": ONE_LINE_KEY}, "GITHUBAPP_ID"),
    ("id without key", {"GITHUBAPP_ID": "12345"}, "GITHUBAPP_PRIVATE_KEY"),
    (
        "malformed key",
        {"GITHUBAPP_ID": "12345", "GITHUBAPP_PRIVATE_KEY": MANGLED_KEY},
        "not a valid PEM",
    ),
    (
        "missing key file",
        {"GITHUBAPP_ID": "12345", "GITHUBAPP_PRIVATE_KEY_PATH": "/nonexistent/app.pem"},
        "GITHUBAPP_PRIVATE_KEY_PATH",
    ),
    (
        "postgres:// store URL",
        {"GITHUBAPP_DATABASE_URL": f"postgres://app:{PASSWORD}@127.0.0.1:1/app"},
        "postgresql+psycopg://",
    ),
    (
        "unimportable Celery config module",
        {"GITHUBAPP_CELERY_CONFIG_MODULE": "no_such_celeryconfig"},
        "GITHUBAPP_CELERY_CONFIG_MODULE",
    ),
]


def environment(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    """The test's environment without any GITHUBAPP_*/CELERY_* of its own, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUBAPP_", "CELERY_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "GITHUBAPP_DATA_DIR": str(tmp_path / ".ghapp"),
            **extra,
        }
    )
    return env


def assert_refused_in_one_line(output: str, reason: str) -> None:
    assert "Traceback" not in output, output
    assert "FileNotFoundError" not in output, output
    assert PASSWORD not in output, output
    lines = [line for line in output.splitlines() if reason in line]
    assert len(lines) == 1, output


def uvicorn_command(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "tests.startupapp:app", "--port", str(port)]


@pytest.mark.parametrize(("case", "extra", "reason"), BROKEN, ids=[c[0] for c in BROKEN])
def test_uvicorn_refuses_to_start_and_says_why_in_one_line(
    tmp_path: Path, case: str, extra: dict[str, str], reason: str
) -> None:
    done = subprocess.run(
        uvicorn_command(free_port()),
        cwd=tmp_path,
        env=environment(tmp_path, extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Application startup failed" in output, output
    assert_refused_in_one_line(output, reason)


def test_uvicorn_starts_on_a_complete_configuration(tmp_path: Path) -> None:
    env = environment(tmp_path, {"GITHUBAPP_ID": "12345", "GITHUBAPP_PRIVATE_KEY": ONE_LINE_KEY})
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            uvicorn_command(free_port()), cwd=tmp_path, env=env, stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 60
        while "Application startup complete" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize(("case", "extra", "reason"), BROKEN, ids=[c[0] for c in BROKEN])
def test_the_worker_refuses_to_start_and_says_why_in_one_line(
    tmp_path: Path, case: str, extra: dict[str, str], reason: str
) -> None:
    broker = sqlite_broker_url(tmp_path / "broker.sqlite")
    command = [sys.executable, "-m", "celery", "-A", "tests.startupapp:celery", "-b", broker]
    command += ["worker", "-P", "solo", "--without-mingle", "--without-gossip"]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env=environment(tmp_path, extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert_refused_in_one_line(output, reason)


def test_the_worker_starts_on_a_complete_configuration(tmp_path: Path) -> None:
    env = environment(tmp_path, {"GITHUBAPP_ID": "12345", "GITHUBAPP_PRIVATE_KEY": ONE_LINE_KEY})
    broker = sqlite_broker_url(tmp_path / "broker.sqlite")
    env["CELERY_BROKER_URL"] = broker
    with CeleryWorker("tests.startupapp:celery", broker, tmp_path, pool="solo", env=env) as w:
        assert w.proc is not None and w.proc.poll() is None


def test_a_placeholder_key_in_code_still_starts_as_in_0_2_7(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fastapi-githubapp 0.2.7's own tests pass a placeholder key and mock the GitHub calls.
    for name in ("GITHUBAPP_ID", "GITHUBAPP_PRIVATE_KEY", "GITHUBAPP_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    app = FastAPI()
    github_app = GitHubApp(
        app, github_app_id=1, github_app_key=b"placeholder", github_app_secret=False
    )
    github_app.on("ping")(lambda: "pong")
    with caplog.at_level(logging.WARNING, logger="ghapp_celery"), TestClient(app) as client:
        response = client.post(
            "/webhooks/github/",
            json={"zen": "hi"},
            headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-1"},
        )
    assert response.status_code == 200
    assert any("not a valid PEM" in r.getMessage() for r in caplog.records)


def test_the_same_placeholder_key_from_the_environment_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUBAPP_ID", "1")
    monkeypatch.setenv("GITHUBAPP_PRIVATE_KEY", "placeholder")
    app = FastAPI()
    GitHubApp(app, github_app_secret=False)
    with pytest.raises(ConfigurationError, match="not a valid PEM"), TestClient(app):
        pass
