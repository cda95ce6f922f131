"""fastapi-githubapp 0.2.7 behaviours a migrating app relies on (issue 12, section 1, items
1-4), in 0.2.7's own test style: FastAPI's TestClient and unittest.mock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ghapp_celery import GitHubApp, InstallationAuthorization
from ghapp_celery.context import set_current_delivery
from ghapp_celery.testing import make_private_key

KEY = make_private_key()


@pytest.fixture(autouse=True)
def no_payload_left_behind() -> Iterator[None]:
    # A payload set by hand stays current for the rest of the thread's context: clear it so
    # the next test starts outside a delivery.
    yield
    set_current_delivery(None)


# -- 1. InstallationAuthorization takes epoch seconds, as 0.2.7 code stores them ----------------


@pytest.mark.parametrize("offset", [3600, 3600.5])
def test_an_epoch_expiry_in_the_future_is_not_expired(offset: float) -> None:
    auth = InstallationAuthorization("t", time.time() + offset)
    assert not auth.expired()
    assert auth.expires_at_epoch == pytest.approx(time.time() + offset, abs=5)


def test_an_epoch_expiry_in_the_past_is_expired() -> None:
    assert InstallationAuthorization("t", time.time() - 1).expired()


def test_iso_strings_datetimes_and_none_keep_their_meaning() -> None:
    assert InstallationAuthorization("t", "2016-07-11T22:14:10Z").expired()
    assert not InstallationAuthorization("t", datetime(2999, 1, 1, tzinfo=UTC)).expired()
    assert not InstallationAuthorization("t", None).expired()  # no expiry: never expired


def test_a_bool_is_not_a_time() -> None:
    with pytest.raises(ValueError, match="not a bool"):
        InstallationAuthorization("t", True)


# -- 2. .id, .key and .secret return what was passed -------------------------------------------


def test_the_constructor_values_read_back_as_passed() -> None:
    key = KEY.encode()
    github_app = GitHubApp(github_app_id=123, github_app_key=key, github_app_secret=b"s3cret")
    assert github_app.id == 123
    assert github_app.key == key
    assert github_app.secret == b"s3cret"
    # The resolved settings still hold them as text, for signing and verifying.
    assert github_app.settings.id == "123"
    assert github_app.settings.private_key_pem() == KEY


def test_without_constructor_values_the_configured_ones_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUBAPP_ID", "77")
    monkeypatch.setenv("GITHUBAPP_WEBHOOK_SECRET", "from-env")
    github_app = GitHubApp()
    assert github_app.id == "77"
    assert github_app.secret == "from-env"


# -- 3. init_app writes the constructor's credentials into app.config --------------------------


def test_init_app_writes_the_credentials_into_app_config() -> None:
    app = FastAPI()
    GitHubApp(app, github_app_id=123, github_app_key=KEY, github_app_secret="s3cret")
    config: dict[str, Any] = app.config  # type: ignore[attr-defined]
    assert config["GITHUBAPP_ID"] == 123
    assert config["GITHUBAPP_PRIVATE_KEY"] == KEY
    assert config["GITHUBAPP_WEBHOOK_SECRET"] == "s3cret"
    # ...and the route they configure still verifies with that secret.
    with TestClient(app) as client:
        answer = client.post("/webhooks/github/", content=b"{}")
    assert answer.status_code == 401


def test_init_app_writes_nothing_that_was_not_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUBAPP_ID", raising=False)
    app = FastAPI()
    GitHubApp(app, github_app_secret="s3cret")
    assert "GITHUBAPP_ID" not in app.config  # type: ignore[attr-defined]
    assert app.config["GITHUBAPP_WEBHOOK_SECRET"] == "s3cret"  # type: ignore[attr-defined]


# -- 4. a payload set by hand gives client() its installation ----------------------------------


@pytest.mark.parametrize("method", ["client", "get_client"])
def test_a_payload_set_by_hand_gives_the_installation(method: str) -> None:
    github_app = GitHubApp(github_app_id=1, github_app_key=KEY, github_app_secret="s")
    github_app.payload = {"installation": {"id": 456}, "action": "opened"}
    token = InstallationAuthorization("ghs_test", time.time() + 3600)
    with patch.object(github_app, "get_access_token", return_value=token) as minted:
        api = getattr(github_app, method)()
    minted.assert_called_once_with(456)
    assert api is not None
    assert github_app.payload["action"] == "opened"


def test_a_payload_without_an_installation_still_needs_an_id() -> None:
    github_app = GitHubApp(github_app_id=1, github_app_key=KEY, github_app_secret="s")
    github_app.payload = {"zen": "Design for failure."}
    with pytest.raises(Exception, match="Missing installation id") as caught:
        github_app.client()
    assert getattr(caught.value, "status", None) == 400
