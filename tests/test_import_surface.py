"""What ``import ghapp_celery`` and ``GitHubApp()`` leave unimported.

An app whose handlers are all inline never needs Celery, kombu or SQLAlchemy, and one without
OAuth never needs authlib: importing the package and building a GitHubApp must not load them
(the background runtime, the store and OAuth load when first used). Each check runs in a
fresh interpreter, as nothing here can unload a module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("celery", "kombu", "billiard", "sqlalchemy", "alembic", "authlib", "ghapi", "redis")

PROBE = """
import json, sys
def loaded():
    return sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
HEAVY = %r
seen = {}
import ghapp_celery
seen["import"] = loaded()
from ghapp_celery import GitHubApp
GitHubApp()
seen["GitHubApp()"] = loaded()
from fastapi import FastAPI
GitHubApp(FastAPI())
seen["GitHubApp(FastAPI())"] = loaded()
@GitHubApp(FastAPI()).on("issues.opened")
def inline() -> None: ...
seen["inline handler"] = loaded()
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    data = tmp_path_factory.mktemp("data")
    env = {"GITHUBAPP_DATA_DIR": str(data), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    seen: dict[str, list[str]] = json.loads(out.stdout)
    return seen


@pytest.mark.parametrize(
    "step", ["import", "GitHubApp()", "GitHubApp(FastAPI())", "inline handler"]
)
def test_nothing_heavy_is_loaded(loaded: dict[str, list[str]], step: str) -> None:
    assert loaded[step] == []
