"""``ghapp_celery.compat`` mirrors fastapi-githubapp 0.2.7's ``githubapp.core`` (issue 12,
section 1, item 9): its public names, and ``GhApi`` as the module attribute ``client()``
constructs through, so a test's ``patch("ghapp_celery.compat.GhApi")`` lands as
``patch("githubapp.core.GhApi")`` did. Written as 0.2.7's own tests/test_core.py and
tests/test_rate_limiting.py are: ``unittest.mock`` and FastAPI's TestClient.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import AsyncMock, Mock, patch

import httpx
import pytest
import respx
from fastapi import FastAPI
from fastapi.testclient import TestClient

import ghapp_celery
from ghapp_celery import compat
from ghapp_celery.compat import (
    LOG,
    STATUS_FUNC_CALLED,
    STATUS_NO_FUNC_CALLED,
    GitHubApp,
    GitHubAppBadCredentials,
    GitHubAppError,
    GithubAppUnkownObject,
    GitHubAppValidationError,
    GitHubRateLimitError,
    GithubUnauthorized,
    InstallationAuthorization,
    RateLimitedGhApi,
    with_rate_limit_handling,
)
from ghapp_celery.context import set_current_delivery
from ghapp_celery.testing import make_private_key
from ghapp_celery.webhooks import signed_request

KEY = make_private_key()

#: Every public name githubapp/core.py 0.2.7 defines at module level (its imports aside, but
#: GhApi, which its tests patch, and time, whose sleep they patch).
CORE_0_2_7 = [
    "GhApi",
    "GitHubApp",
    "GitHubAppBadCredentials",
    "GitHubAppError",
    "GitHubAppValidationError",
    "GitHubRateLimitError",
    "GithubAppUnkownObject",
    "GithubUnauthorized",
    "InstallationAuthorization",
    "LOG",
    "RateLimitedGhApi",
    "STATUS_FUNC_CALLED",
    "STATUS_NO_FUNC_CALLED",
    "time",
    "with_rate_limit_handling",
]


@pytest.fixture(autouse=True)
def no_payload_left_behind() -> Iterator[None]:
    yield
    set_current_delivery(None)


def token(value: str = "test_token") -> InstallationAuthorization:
    return InstallationAuthorization(value, time.time() + 3600)


# -- the names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORE_0_2_7)
def test_every_name_of_githubapp_core_is_in_compat(name: str) -> None:
    assert hasattr(compat, name), name
    if name not in ("time", "LOG"):
        assert name in compat.__all__


def test_the_names_are_the_package_s_own() -> None:
    # One class per name: an except clause or isinstance check written against either works.
    assert GitHubApp is ghapp_celery.GitHubApp
    assert InstallationAuthorization is ghapp_celery.InstallationAuthorization
    for error in (
        GitHubAppError,
        GitHubAppValidationError,
        GitHubAppBadCredentials,
        GithubUnauthorized,
        GithubAppUnkownObject,
        GitHubRateLimitError,
    ):
        assert getattr(ghapp_celery, error.__name__) is error
        assert issubclass(error, GitHubAppError)
    assert RateLimitedGhApi is ghapp_celery.RateLimitedGhApi
    assert with_rate_limit_handling is ghapp_celery.with_rate_limit_handling
    assert (STATUS_FUNC_CALLED, STATUS_NO_FUNC_CALLED) == ("HIT", "MISS")
    assert vars(compat)["time"] is time  # so patch("ghapp_celery.compat.time.sleep") is time's


def test_0_2_7_exceptions_keep_message_status_and_data() -> None:
    # 0.2.7's TestGitHubAppExceptions.
    error = GitHubAppError("test message", status=400, data={"error": "test"})
    assert (error.message, error.status, error.data) == ("test message", 400, {"error": "test"})
    assert str(error) == "test message"
    assert GithubAppUnkownObject("not found", status=404).status == 404
    assert GitHubAppValidationError("validation failed", status=422).data is None


def test_log_is_the_logger_the_app_writes_to(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    github_app = GitHubApp(app, github_app_secret="s")
    with caplog.at_level("DEBUG", logger=LOG.name):
        github_app.init_app(app)  # a second call: 0.2.7 logged it at DEBUG on its LOG
    assert [r.name for r in caplog.records if "more than once" in r.message] == [LOG.name]


def test_importing_ghapp_celery_still_leaves_ghapi_unloaded() -> None:
    # GhApi is built on first use: ghapi costs ~250 ms to import (python -X importtime).
    probe = "import sys, ghapp_celery.compat; print('ghapi' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert out.stdout.strip() == "False"


# -- patch("ghapp_celery.compat.GhApi") lands on the GhApi client() constructs ------------------


@patch.object(GitHubApp, "get_access_token")
@patch("ghapp_celery.compat.GhApi")
def test_client_with_installation_id(mock_ghapi: Mock, mock_get_token: Mock) -> None:
    # 0.2.7's TestGitHubAppClient.test_client_with_installation_id, with the one patch target.
    mock_auth = Mock()
    mock_auth.token = "test_token"
    mock_get_token.return_value = mock_auth
    mock_api_instance = Mock()
    mock_ghapi.return_value = mock_api_instance

    github_app = GitHubApp()
    result = github_app.client(installation_id=123)

    mock_get_token.assert_called_once_with(123)
    mock_ghapi.assert_called_once_with(token="test_token")
    assert result == mock_api_instance


@patch.object(GitHubApp, "get_access_token", return_value=token())
@patch("ghapp_celery.compat.GhApi")
def test_client_with_payload_installation(mock_ghapi: Mock, mock_get_token: Mock) -> None:
    github_app = GitHubApp()
    github_app.payload = {"installation": {"id": 456}}
    assert github_app.get_client() is mock_ghapi.return_value
    mock_get_token.assert_called_once_with(456)
    mock_ghapi.assert_called_once_with(token="test_token")


@patch.object(GitHubApp, "get_access_token", return_value=token())
@patch("ghapp_celery.compat.GhApi")
def test_an_enterprise_client_is_built_on_its_url(mock_ghapi: Mock, _: Mock) -> None:
    github_app = GitHubApp(github_app_url="https://ghe.example/api/v3")
    github_app.client(7)
    mock_ghapi.assert_called_once_with(token="test_token", gh_host="https://ghe.example/api/v3")


@patch.object(GitHubApp, "aget_access_token", new_callable=AsyncMock, return_value=token())
@patch("ghapp_celery.compat.GhApi")
def test_aclient_is_built_through_the_same_attribute(mock_ghapi: Mock, _: AsyncMock) -> None:
    api = asyncio.run(GitHubApp().aclient(9))
    assert api is mock_ghapi.return_value
    mock_ghapi.assert_called_once_with(token="test_token", sync=False)


def test_the_decorator_wraps_the_patched_client() -> None:
    # 0.2.7's test_decorator_wraps_client_calls, in a webhook handler served by TestClient.
    app = FastAPI()
    github_app = GitHubApp(app, github_app_id=12345, github_app_key=KEY, github_app_secret="s")
    mock_ghapi = Mock()
    mock_ghapi.issues.create_comment = Mock(return_value={"id": 456})

    @github_app.on("issues.opened")
    @with_rate_limit_handling(github_app)
    def handle_issue() -> int:
        client = github_app.get_client()
        assert isinstance(client, RateLimitedGhApi)
        return int(client.issues.create_comment(owner="test", repo="test")["id"])

    body, headers = signed_request(
        "issues", {"action": "opened", "installation": {"id": 123}}, secret="s"
    )
    with (
        patch("ghapp_celery.compat.GhApi", return_value=mock_ghapi) as ghapi_class,
        patch.object(github_app, "get_access_token", return_value=token("fake-token")) as minted,
        TestClient(app) as client,
    ):
        answer = client.post("/webhooks/github/", content=body, headers=headers)
    assert answer.json() == {"status": STATUS_FUNC_CALLED, "calls": {"handle_issue": 456}}
    minted.assert_called_once_with(123)
    ghapi_class.assert_called_once_with(token="fake-token")
    mock_ghapi.issues.create_comment.assert_called_once_with(owner="test", repo="test")


def test_unpatched_the_client_is_ghapi_s_own_and_synchronous() -> None:
    from ghapi.all import GhApi
    from ghapi.core import GhSyncTransport

    github_app = GitHubApp()
    with patch.object(github_app, "get_access_token", return_value=token()):
        api = github_app.client(1)
    assert isinstance(api, GhApi) and isinstance(api, compat.GhApi)
    assert isinstance(api.transport, GhSyncTransport)  # 0.2.7's sync handlers get answers
    assert api.gh_host == "https://api.github.com"
    assert api.headers["Authorization"] == "token test_token"


@respx.mock
def test_a_0_2_7_fake_key_works_with_the_jwt_patched_and_respx_as_github() -> None:
    # 0.2.7's tests passed github_app_key=b"test_key" and patched githubapp.core.jwt or
    # GitHubApp._create_jwt; here the JWT comes from github_app.auth.create_jwt, and the token
    # request goes through httpx, where respx answers it (docs/migration.md).
    github_app = GitHubApp(github_app_id=123, github_app_key=b"test_key")
    route = respx.post("https://api.github.com/app/installations/456/access_tokens").mock(
        return_value=httpx.Response(
            201, json={"token": "test_token", "expires_at": "2099-01-01T00:00:00Z"}
        )
    )
    with patch.object(github_app.auth, "create_jwt", return_value="test_jwt"):
        result = github_app.get_access_token(installation_id=456)
    assert isinstance(result, InstallationAuthorization)
    assert result.token == "test_token"
    assert route.calls.last.request.headers["Authorization"] == "Bearer test_jwt"


def test_gh_host_from_the_environment_is_not_the_app_s_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ghapi reads $GH_HOST once, at import, into ghapi.core.GH_HOST; the gh CLI's GH_HOST is a
    # bare host name, which ghapi would take as the API URL of GhApi(token=...).
    monkeypatch.setattr("ghapi.core.GH_HOST", "github.example.com")
    github_app = GitHubApp()
    with patch.object(github_app, "get_access_token", return_value=token()):
        assert github_app.client(1).gh_host == "https://api.github.com"
