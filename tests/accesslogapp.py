"""Apps served by ``python -m uvicorn`` in tests/test_access_log.py, configured by environment.

``app``: a GitHubApp with OAuth login (GITHUBAPP_OAUTH_* from the test). ``plain``: a FastAPI
app without ghapp_celery, for a user's own ``--log-config`` with the documented filter.
"""

from __future__ import annotations

from fastapi import FastAPI

from ghapp_celery import GitHubApp

app = FastAPI()
github_app = GitHubApp(app)

plain = FastAPI()


@plain.get("/hello")
def hello() -> dict[str, str]:
    return {"hello": "world"}
