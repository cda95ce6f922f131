"""The first-run path the README promises: the quickstart app and a worker, fed by
`ghapp-celery receive`, on the embedded SQLite broker and store (nothing installed)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from ghapp_celery.cli import main, sample_names, sample_payload
from ghapp_celery.testing import serve
from tests._workers import CeleryWorker, sqlite_broker_url


def test_quickstart_runs_inline_and_background_handlers_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "GITHUBAPP_DATA_DIR": str(tmp_path / ".ghapp"),
        "CELERY_BROKER_URL": sqlite_broker_url(tmp_path / ".ghapp" / "broker.sqlite"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GITHUBAPP_WEBHOOK_SECRET", raising=False)
    quickstart = importlib.reload(importlib.import_module("examples.quickstart.app"))

    with (
        CeleryWorker(
            "tests.quickstart_worker:celery",
            env["CELERY_BROKER_URL"],
            tmp_path / "worker",
            pool="threads",
            concurrency=4,
            queue="github.issues,github.default",
            env=env,
        ),
        serve(quickstart.app) as url,
    ):
        hook = f"{url}/webhooks/github/"
        assert main(["receive", "ping", "--url", hook]) == 0
        assert '"status":"HIT"' in capsys.readouterr().out

        assert main(["receive", "issues.opened", "--url", hook, "--wait", "--timeout", "60"]) == 0
        out = capsys.readouterr().out
        assert "-> 202" in out and '"status":"QUEUED"' in out
        assert "github.issues.opened:examples.quickstart.app.welcome: succeeded" in out

        # A wrong secret is refused by the app, and the command says so with its exit code.
        assert main(["receive", "ping", "--url", hook, "--secret", "bad"]) == 1
        assert "401" in capsys.readouterr().out


def test_receive_reports_an_unreachable_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["receive", "ping", "--url", "http://127.0.0.1:9/webhooks/github/"]) == 2
    assert "Could not reach" in capsys.readouterr().out


def test_routes_lists_each_handler_with_its_task_and_queue(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["routes", "--app", "tests.bgapp:github_app"]) == 0
    out = capsys.readouterr().out
    assert (
        "issues.opened  tests.bgapp.opened" in out.replace("   ", "  ")
        or "tests.bgapp.opened" in out
    )
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert lines["issues.opened"][2:] == [
        "github.issues.opened:tests.bgapp.opened",
        "github.issues",
    ]
    assert lines["push"][2:] == ["github.push:tests.bgapp.noop", "github.bulk"]
    assert lines["ping"][2:] == ["(inline)", "-"]


def test_samples_get_an_installation_except_app_level_events() -> None:
    assert {"issues.opened", "ping", "push"} <= set(sample_names())
    assert sample_payload("issues.opened", 7)[1]["installation"]["id"] == 7
    event, ping = sample_payload("ping", 7)
    assert event == "ping" and "installation" not in ping
