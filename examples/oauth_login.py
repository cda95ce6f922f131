"""Sign users in with GitHub and act as them: ghapp_celery's OAuth login in one file.

Run against GitHub (a GitHub App with "Callback URL" http://localhost:8000/auth/github/callback):

    export GITHUBAPP_OAUTH_CLIENT_ID=Iv23li...        # the app's Client ID (not the App ID)
    export GITHUBAPP_OAUTH_CLIENT_SECRET=...          # "Generate a new client secret"
    export GITHUBAPP_OAUTH_SESSION_SECRET=$(openssl rand -base64 48)
    export GITHUBAPP_OAUTH_REDIRECT_URI=http://localhost:8000/auth/github/callback
    export GITHUBAPP_OAUTH_COOKIE_SECURE=false        # plain http on localhost only
    uvicorn examples.oauth_login:app

then open http://localhost:8000/ and follow "Sign in with GitHub". docs/oauth.md explains the
options; tests/test_oauth_flow.py runs this very app against FakeGitHub.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from ghapp_celery import GitHubApp


def create_app(**github_app_options: Any) -> tuple[FastAPI, GitHubApp]:
    """The example app; keyword arguments go to GitHubApp (the environment otherwise)."""
    app = FastAPI(title="Sign in with GitHub")
    github_app = GitHubApp(**github_app_options)
    allowed_orgs: set[str] = set()  # e.g. {"my-org"}: refuse everybody else at login

    @github_app.on_login
    async def check_user(user: dict[str, Any], request: Request) -> None:
        # Raise to refuse a login: the session just issued is revoked, the status answered.
        if allowed_orgs and user["login"] not in allowed_orgs:
            raise HTTPException(status_code=403, detail="Not allowed here")

    @github_app.on_logout
    def goodbye(user: dict[str, Any], request: Request) -> None:
        print(f"{user['login']} signed out")

    @app.get("/", response_class=HTMLResponse)
    def home(
        user: dict[str, Any] | None = Depends(github_app.optional_user),
    ) -> str:
        if user is None:
            login = "/auth/github/login?redirect=true&redirect_to=/"
            return f'<a href="{login}">Sign in with GitHub</a>'
        return (
            f"<p>Signed in as {user['login']}.</p>"
            '<p><a href="/me/repos">Your repositories</a></p>'
            '<form method="post" action="/auth/github/logout"><button>Sign out</button></form>'
        )

    @app.get("/me/repos")
    async def my_repos(
        user: dict[str, Any] = Depends(github_app.require_user),
    ) -> dict[str, Any]:
        # Acts as the user: their token, refreshed when it has expired (every 8 hours).
        async with github_app.user_github(user) as gh:
            profile = (await gh.get("/user")).data
        return {"login": profile["login"], "public_repos": profile.get("public_repos")}

    github_app.init_app(app)  # mounts /auth/github/{login,callback,logout,user}
    return app, github_app


app, github_app = create_app()  # uvicorn examples.oauth_login:app
