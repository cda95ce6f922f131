"""Shared fixtures. Servers a test needs are started by the test when their binary exists;
when it does not, the test skips locally but FAILS in CI (CI=true), so nothing goes untested."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Path of ``name``; skip (locally) or fail (in CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; .ci/run installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _session_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The embedded store and broker directory of module- and session-scoped apps: the intake
    records every delivery (background or not), and no test may write into the checkout's
    .ghapp/. Function-scoped tests get their own directory (``_own_data_dir``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GITHUBAPP_DATA_DIR", str(tmp_path_factory.mktemp("ghapp-session-data")))
        yield


@pytest.fixture(autouse=True)
def _own_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's own embedded store and broker directory, so tests never share rows. A test
    that sets GITHUBAPP_DATA_DIR itself overrides this."""
    monkeypatch.setenv("GITHUBAPP_DATA_DIR", str(tmp_path_factory.mktemp("ghapp-data")))
