"""The first-run path: the quickstart app served by uvicorn, fed by `ghapp-celery receive`."""

from __future__ import annotations

import pytest

from ghapp_celery.cli import main, sample_names, sample_payload
from ghapp_celery.testing import serve


def test_receive_posts_a_signed_sample_to_the_quickstart(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUBAPP_WEBHOOK_SECRET", raising=False)
    from examples.quickstart import app

    with serve(app) as url:
        assert main(["receive", "issues.opened", "--url", f"{url}/webhooks/github/"]) == 0
        out = capsys.readouterr().out
        assert '"status":"HIT"' in out and "welcomed issue #1" in out
        # A wrong secret is refused by the app, and the command says so with its exit code.
        code = main(["receive", "ping", "--url", f"{url}/webhooks/github/", "--secret", "bad"])
        assert code == 1
        assert "401" in capsys.readouterr().out


def test_receive_reports_an_unreachable_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["receive", "ping", "--url", "http://127.0.0.1:9/webhooks/github/"]) == 2
    assert "Could not reach" in capsys.readouterr().out


def test_samples_get_an_installation_except_app_level_events() -> None:
    assert {"issues.opened", "ping", "push"} <= set(sample_names())
    assert sample_payload("issues.opened", 7)[1]["installation"]["id"] == 7
    event, ping = sample_payload("ping", 7)
    assert event == "ping" and "installation" not in ping
