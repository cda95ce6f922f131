"""Where settings come from: the user's celeryconfig and the environment must be honoured."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ghapp_celery import GitHubApp


def test_a_celeryconfig_module_overrides_our_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mycelerycfg.py").write_text(
        "task_acks_late = False\n"
        "worker_prefetch_multiplier = 4\n"
        "task_default_queue = 'mine'\n"
        "worker_send_task_events = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GITHUBAPP_CELERY_CONFIG_MODULE", "mycelerycfg")
    monkeypatch.setenv("GITHUBAPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    try:
        conf = GitHubApp(github_app_secret="s").celery.conf
    finally:
        sys.modules.pop("mycelerycfg", None)
    assert conf.task_acks_late is False
    assert conf.worker_prefetch_multiplier == 4
    assert conf.task_default_queue == "mine"
    assert conf.worker_send_task_events is True
    # What the module leaves unset still gets ghapp_celery's reliability defaults.
    assert conf.task_reject_on_worker_lost is True


def test_rate_limit_settings_come_from_the_environment_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUBAPP_RATE_LIMIT_RETRIES", "7")
    monkeypatch.setenv("GITHUBAPP_RATE_LIMIT_MAX_SLEEP", "5")
    from_env = GitHubApp(github_app_secret="s").settings
    assert (from_env.rate_limit_retries, from_env.rate_limit_max_sleep) == (7, 5)
    given = GitHubApp(github_app_secret="s", rate_limit_retries=3, rate_limit_max_sleep=9)
    assert (given.settings.rate_limit_retries, given.settings.rate_limit_max_sleep) == (3, 9)
    monkeypatch.delenv("GITHUBAPP_RATE_LIMIT_RETRIES")
    monkeypatch.delenv("GITHUBAPP_RATE_LIMIT_MAX_SLEEP")
    defaults = GitHubApp(github_app_secret="s").settings
    assert (defaults.rate_limit_retries, defaults.rate_limit_max_sleep) == (2, 60)
