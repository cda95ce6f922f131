"""``ghapp-celery`` as users run it, a subprocess: one line and a non-zero exit for what it
cannot do (an unreachable store or broker, an app it cannot import, a filter it does not
know, no store where it runs, Celery settings it cannot import), never a traceback; help
without RST markup; times in ISO 8601 as the status API writes them; and ``check``, which
reports the whole configuration with what is missing."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ghapp_celery import GitHubApp, Settings
from ghapp_celery.testing import make_private_key, signed_request
from tests._workers import sqlite_broker_url

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "ghapp-celery")
APP = "tests.startupapp:github_app"
PASSWORD = "pw-M4RKER-31c7"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in ``tmp_path``, with none of the test's own GITHUBAPP_*/CELERY_* variables."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("GITHUBAPP_", "CELERY_"))
    }
    environment.update({"PYTHONPATH": str(ROOT), **env})
    return subprocess.run(
        [CLI, *args], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )


def one_line_error(done: subprocess.CompletedProcess[str], needle: str) -> str:
    """The one line of a failed command's output that says ``needle``; no traceback."""
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    assert PASSWORD not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], output
    return lines[0]


def complete_env(tmp_path: Path) -> dict[str, str]:
    return {
        "GITHUBAPP_ID": "12345",
        "GITHUBAPP_PRIVATE_KEY": make_private_key().replace("\n", "\\n"),
        "GITHUBAPP_WEBHOOK_SECRET": "s3cret",
        "CELERY_BROKER_URL": sqlite_broker_url(tmp_path / ".ghapp" / "broker.sqlite"),
    }


def rows(output: str) -> dict[str, list[tuple[str, str]]]:
    """``check``'s lines, by part: (state, detail)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for line in output.splitlines():
        cells = [cell for cell in line.split("  ") if cell.strip()]
        part, state, detail = cells[0].strip(), cells[1].strip(), "  ".join(cells[2:]).strip()
        found.setdefault(part, []).append((state, detail))
    return found


def test_check_reports_a_complete_configuration(tmp_path: Path) -> None:
    done = run(tmp_path, "check", "--app", APP, **complete_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    report = rows(done.stdout)
    assert report["credentials"] == [("ok", "app id 12345, a valid RSA private key")]
    assert report["webhook secret"] == [("ok", "set (1 accepted)")]
    assert report["celery settings"][0][0] == "ok"
    assert report["store"][0][0] == "ok" and "not created yet" in report["store"][0][1]
    assert report["broker"][0][0] == "ok" and "broker.sqlite" in report["broker"][0][1]
    assert report["route"] == [
        ("ok", "issues.opened -> tests.startupapp.opened (background, queue github.issues)"),
        ("ok", "ping -> tests.startupapp.pong (inline)"),
    ]
    assert "s3cret" not in done.stdout


def test_check_says_what_is_missing_and_what_is_unreachable(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:1/app"
    done = run(
        tmp_path,
        "check",
        "--app",
        APP,
        CELERY_BROKER_URL=UNREACHABLE_REDIS,
        GITHUBAPP_DATABASE_URL=url,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output and PASSWORD not in output, output
    report = rows(done.stdout)
    (credentials,) = report["credentials"]
    assert credentials[0] == "missing" and "GITHUBAPP_ID" in credentials[1]
    assert report["webhook secret"][0][0] == "missing"
    (store,) = report["store"]
    assert store[0] == "error" and "unavailable" in store[1] and "127.0.0.1" in store[1]
    (broker,) = report["broker"]
    assert broker[0] == "error" and "unreachable" in broker[1]


def test_an_unreachable_store_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:1/app"
    for args in (["deliveries", "list"], ["deliveries", "show", "d-1"]):
        done = run(tmp_path, *args, GITHUBAPP_DATABASE_URL=url)
        one_line_error(done, "store is unavailable")


def test_a_postgres_url_is_one_line_naming_the_right_scheme(tmp_path: Path) -> None:
    done = run(tmp_path, "deliveries", "list", GITHUBAPP_DATABASE_URL="postgres://a@h/db")
    one_line_error(done, "postgresql+psycopg://")


def test_an_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    env = {**complete_env(tmp_path), "CELERY_BROKER_URL": UNREACHABLE_REDIS}
    for args in (["sweep", "--app", APP], ["deliveries", "replay", "d-1", "--app", APP]):
        done = run(tmp_path, *args, **env)
        one_line_error(done, "unreachable")


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("no_such_module:github_app", "no_such_module"),
        ("tests.startupapp:nothing_here", "nothing_here"),
        ("tests.startupapp:app", "not a GitHubApp"),
        ("tests.startupapp", "module:attribute"),
    ],
)
def test_an_app_that_cannot_be_loaded_is_one_line(tmp_path: Path, spec: str, needle: str) -> None:
    one_line_error(run(tmp_path, "routes", "--app", spec), needle)


def test_unimportable_celery_settings_are_an_error(tmp_path: Path) -> None:
    env = {"GITHUBAPP_CELERY_CONFIG_MODULE": "no_such_celeryconfig"}
    for args in (["routes", "--app", APP], ["sweep", "--app", APP]):
        one_line_error(run(tmp_path, *args, **env), "GITHUBAPP_CELERY_CONFIG_MODULE")


def test_an_unknown_state_is_refused_as_the_status_api_refuses_it(tmp_path: Path) -> None:
    app = FastAPI()
    GitHubApp(app, settings=Settings(status_token=SecretStr("t0ken"), data_dir=tmp_path / "api"))
    with TestClient(app) as client:
        answer = client.get(
            "/webhooks/github/status/deliveries",
            params={"state": "bogus"},
            headers={"Authorization": "Bearer t0ken"},
        )
    assert answer.status_code == 400
    api_states = ast.literal_eval(answer.json()["description"].split("one of ", 1)[1])

    done = run(tmp_path, "deliveries", "list", "--state", "bogus")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "bogus" in done.stderr
    for state in api_states:
        assert f"'{state}'" in done.stderr
    assert not (tmp_path / ".ghapp").exists()


def test_no_store_in_this_directory_is_said_not_created(tmp_path: Path) -> None:
    for args in (["deliveries", "list"], ["deliveries", "show", "d-1"]):
        line = one_line_error(run(tmp_path, *args), "No delivery store")
        assert str(tmp_path / ".ghapp" / "store.sqlite") in line
    assert not (tmp_path / ".ghapp").exists()


COMMANDS = [
    [],
    ["receive"],
    ["samples"],
    ["routes"],
    ["check"],
    ["db"],
    ["db", "upgrade"],
    ["sweep"],
    ["deliveries"],
    ["deliveries", "list"],
    ["deliveries", "show"],
    ["deliveries", "replay"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "top" for c in COMMANDS])
def test_help_has_no_rst_markup(tmp_path: Path, command: list[str]) -> None:
    done = run(tmp_path, *command, "--help")
    assert done.returncode == 0, done.stderr
    for markup in ("``", ":class:", ":func:", ":meth:", ".. "):
        assert markup not in done.stdout, done.stdout


def test_times_print_in_iso_8601_as_the_status_api_writes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = sqlite_broker_url(tmp_path / ".ghapp" / "broker.sqlite")
    monkeypatch.setenv("CELERY_BROKER_URL", broker)
    app = FastAPI()
    settings = Settings(
        status_token=SecretStr("t0ken"),
        data_dir=tmp_path / ".ghapp",
        webhook_secret=SecretStr("s3cret"),
    )
    github_app = GitHubApp(app, settings=settings)
    github_app.on("issues.opened", background=True)(lambda: None)
    body, headers = signed_request(
        "issues", {"action": "opened", "installation": {"id": 7}}, secret="s3cret"
    )
    delivery_id = headers["X-GitHub-Delivery"]
    with TestClient(app) as client:
        assert client.post("/webhooks/github/", content=body, headers=headers).status_code == 202
        shown = client.get(
            f"/webhooks/github/status/deliveries/{delivery_id}",
            headers={"Authorization": "Bearer t0ken"},
        ).json()
    api_time = shown["received_at"]
    assert "T" in api_time

    env = {"CELERY_BROKER_URL": broker}
    done = run(tmp_path, "deliveries", "show", delivery_id, **env)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["received_at"] == api_time
    assert record["runs"][0]["created_at"] == shown["runs"][0]["created_at"]

    done = run(tmp_path, "deliveries", "list", **env)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"{api_time} {delivery_id} issues.opened")
