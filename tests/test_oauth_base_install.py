"""OAuth from the base install (issue 12, section 1, item 7), checked in a real venv.

fastapi-githubapp 0.2.7 ships its OAuth login in the base install. Here the package is built
into a wheel and installed into a fresh venv as a user would (``pip install ghapp-celery``,
no extra), beside respx as a user's tests have it; then a 0.2.7 app's login test runs in that
venv: ``GitHubApp(app, oauth_client_id=...)``, TestClient through /login and /callback, GitHub
mocked with respx. Before the change the constructor died with ``No module named 'authlib'``
there. ``ghapp-celery[oauth]``, in existing requirements files, must still resolve, and adds
nothing.

One venv for the module (about a minute, most of it pip); pip's cache keeps reruns quicker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Building the wheel and installing its dependencies into a fresh venv: about a minute with
# pip's cache warm, several on a busy machine or a cold cache (the default is 120 s).
pytestmark = pytest.mark.timeout(900)

LOGIN_TEST = """
import importlib.util, os
from urllib.parse import parse_qs, urlparse

import respx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ghapp_celery import GitHubApp

app = FastAPI()
GitHubApp(
    app,
    oauth_client_id="Iv23liCLIENT",
    oauth_client_secret="client-secret",
    oauth_session_secret="session-secret-0123456789abcdef",
)
client = TestClient(app)
auth_url = client.get("/auth/github/login").json()["auth_url"]
state = parse_qs(urlparse(auth_url).query)["state"][0]
with respx.mock(assert_all_called=True) as mock:
    mock.post("https://github.com/login/oauth/access_token").respond(
        json={"access_token": "gho_token", "token_type": "bearer", "scope": ""}
    )
    mock.get("https://api.github.com/user").respond(json={"id": 1, "login": "octocat"})
    mock.get("https://api.github.com/user/emails").respond(json=[])
    answer = client.get("/auth/github/callback", params={"code": "c", "state": state})
assert answer.status_code == 200, answer.text
assert answer.json()["user"]["login"] == "octocat"
assert client.get("/auth/github/user").json()["login"] == "octocat"
print("login ok; authlib installed:", importlib.util.find_spec("authlib") is not None)
"""


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUBAPP_", "VIRTUAL_ENV"))}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the venv's python, the wheel) after ``pip install ghapp-celery respx``."""
    work = tmp_path_factory.mktemp("base-install")
    # Built from a copy of what the wheel holds: setuptools builds in the source tree, and a
    # build/ left there would carry deleted modules into later wheels.
    source = work / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "ghapp_celery", source / "ghapp_celery", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(source)],
        cwd=work,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = work.glob("ghapp_celery-*.whl")
    venv.create(work / "venv", with_pip=True)
    python = work / "venv" / "bin" / "python"
    # respx: what a user's test environment adds; nothing else of the dev install comes along.
    installed = run(
        [str(python), "-m", "pip", "install", str(wheel), "respx>=0.22,<1"],
        cwd=work,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return python, wheel


def test_the_oauth_extra_still_resolves_and_adds_nothing(
    base_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    python, wheel = base_venv
    # --dry-run: the venv stays the base install for the login test.
    extra = run(
        [str(python), "-m", "pip", "install", "--dry-run", f"{wheel}[oauth]"],
        cwd=tmp_path,
        timeout=300,
    )
    assert extra.returncode == 0, extra.stdout + extra.stderr
    assert "does not provide the extra" not in extra.stdout + extra.stderr
    assert "Would install" not in extra.stdout, extra.stdout


def test_a_027_login_test_passes_in_the_base_install(
    base_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    python, _ = base_venv
    result = run([str(python), "-c", LOGIN_TEST], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    # Nothing beyond the base install served the login.
    assert "login ok; authlib installed: False" in result.stdout
