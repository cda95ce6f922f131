"""GitHub's OAuth web flow on a FakeGitHub: ``FakeOAuth.install(fake)``.

An add-on above the server: it installs its endpoints on a FakeGitHub after construction, so
it imports FakeGitHub and FakeGitHub knows nothing of it.

Adds, through ``FakeGitHub.add_route`` (so faults, the request log and the User-Agent check
apply), what GitHub serves for user tokens (GITHUB_FACTS §12):

- ``GET /login/oauth/authorize``: the user approves at once and the browser is sent to the
  ``redirect_uri`` with ``code`` and ``state`` (or ``error=access_denied`` after ``deny_next``).
  Only S256 PKCE challenges are accepted. The code lives 10 minutes and works once.
- ``POST /login/oauth/access_token``: the code grant (client secret, redirect_uri and PKCE
  verifier checked) and the refresh grant. Errors are HTTP 200 with an ``error`` field, like
  GitHub's. Answers are JSON (GitHub's default is form-encoded; the fake's pipeline speaks
  JSON only, so a test checks the ``Accept`` header in ``fake.requests``). Access tokens
  (``ghu_``) last 8 hours and refresh tokens (``ghr_``) about 6 months on the fake's clock; a
  refresh invalidates the old pair.
- ``GET /user``, ``GET /user/emails`` with a user token (the fake's usual token checks).
- ``DELETE /applications/{client_id}/grant`` with the app's basic auth: revokes every token of
  that user.

The web endpoints sit at the fake's root, as on github.com; serve the fake without a prefix
and use its root URL both as the web host and as the API URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request

from ghapp_celery.testing._github import FakeGitHub
from ghapp_celery.testing._keys import random_token
from ghapp_celery.testing._replies import error_reply
from ghapp_celery.testing._types import Credential, IssuedToken, Reply

__all__ = ["ACCESS_TTL", "REFRESH_TTL", "FakeOAuth", "FakeUser"]

ACCESS_TTL = 28_800  # 8 hours
REFRESH_TTL = 15_897_600  # "6 months", the current docs' number
CODE_TTL = 600
_USER_INSTALLATION = 0  # IssuedToken needs an installation id; user tokens have none


@dataclass
class FakeUser:
    id: int = 583231
    login: str = "octocat"
    name: str = "The Octocat"
    email: str | None = "octocat@github.com"
    emails: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "email": "octocat@github.com",
                "primary": True,
                "verified": True,
                "visibility": "public",
            }
        ]
    )

    def profile(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "id": self.id,
            "node_id": "MDQ6VXNlcjU4MzIzMQ==",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{self.id}?v=4",
            "type": "User",
            "site_admin": False,
            "name": self.name,
            "email": self.email,
        }


@dataclass
class _Code:
    user: FakeUser
    redirect_uri: str | None
    challenge: str | None
    expires_at: float


@dataclass
class _Refresh:
    user: FakeUser
    access_token: str
    expires_at: float
    used: bool = False


class FakeOAuth:
    """The OAuth side of one FakeGitHub; the test drives it through these attributes."""

    def __init__(self, fake: FakeGitHub, client_secret: str, user: FakeUser | None) -> None:
        self.fake = fake
        self.client_secret = client_secret
        self.user = user or FakeUser()
        self.callback_urls: list[str] = []  # registered callback URLs; empty: accept any
        self.expiring = True  # False: the app opted out of expiring user tokens
        self.deny_next = False
        self.emails_forbidden = False
        self.codes: dict[str, _Code] = {}
        self.refresh_tokens: dict[str, _Refresh] = {}
        self.users_by_token: dict[str, FakeUser] = {}
        self.token_grants = 0
        self.refresh_grants = 0
        self.revoked_grants = 0
        self._lock = threading.Lock()

    @classmethod
    def install(
        cls,
        fake: FakeGitHub,
        *,
        client_secret: str = "fake-client-secret",  # noqa: S107 (a test double)
        user: FakeUser | None = None,
    ) -> FakeOAuth:
        oauth = cls(fake, client_secret, user)
        fake.add_route("/login/oauth/authorize", oauth._authorize, auth="none")
        fake.add_route(
            "/login/oauth/access_token", oauth._access_token, auth="none", methods=("POST",)
        )
        fake.add_route("/user", oauth._user, auth="token")
        fake.add_route("/user/emails", oauth._emails, auth="token")
        fake.add_route(
            "/applications/{client_id}/grant", oauth._revoke_grant, auth="none", methods=("DELETE",)
        )
        return oauth

    # -- what a test inspects -----------------------------------------------------------------

    def access_token_is_valid(self, token: str) -> bool:
        return self.fake.token_is_valid(token)

    def issued_access_tokens(self) -> list[str]:
        with self._lock:
            return list(self.users_by_token)

    # -- endpoints ----------------------------------------------------------------------------

    async def _authorize(self, request: Request, credential: Credential) -> Reply:
        q = request.query_params
        if q.get("client_id") != self.fake.client_id:
            return error_reply(404)
        redirect_uri = q.get("redirect_uri")
        target = redirect_uri or (self.callback_urls[0] if self.callback_urls else None)
        if target is None or (self.callback_urls and target not in self.callback_urls):
            return Reply(400, {"error": "redirect_uri_mismatch"})
        state = q.get("state")
        params: dict[str, str] = {} if state is None else {"state": state}
        challenge = q.get("code_challenge")
        if challenge is not None and q.get("code_challenge_method") != "S256":
            params["error"] = "invalid_request"
        elif self.deny_next:
            self.deny_next = False
            params["error"] = "access_denied"
        else:
            code = secrets.token_hex(10)
            with self._lock:
                self.codes[code] = _Code(
                    self.user, redirect_uri, challenge, self.fake.clock() + CODE_TTL
                )
            params["code"] = code
        separator = "&" if "?" in target else "?"
        return Reply(302, None, {"location": f"{target}{separator}{urlencode(params)}"})

    async def _access_token(self, request: Request, credential: Credential) -> Reply:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if form.get("client_id") != self.fake.client_id or not secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        ):
            answer = self._error("incorrect_client_credentials", "Client authentication failed")
        elif form.get("grant_type") == "refresh_token":
            answer = self._refresh_grant(form)
        elif form.get("grant_type", "authorization_code") == "authorization_code":
            answer = self._code_grant(form)
        else:
            answer = self._error("unsupported_grant_type", "The grant type is not supported")
        return Reply(200, answer)

    @staticmethod
    def _error(error: str, description: str) -> dict[str, Any]:
        docs = "https://docs.github.com/apps/oauth-apps/maintaining-oauth-apps"
        return {"error": error, "error_description": description, "error_uri": docs}

    def _code_grant(self, form: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            entry = self.codes.pop(form.get("code", ""), None)
        bad = self._error("bad_verification_code", "The code passed is incorrect or expired.")
        if entry is None or self.fake.clock() >= entry.expires_at:
            return bad
        if form.get("redirect_uri") and form["redirect_uri"] != entry.redirect_uri:
            return self._error("redirect_uri_mismatch", "The redirect_uri MUST match.")
        if entry.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not verifier or not secrets.compare_digest(expected, entry.challenge):
                return bad
        with self._lock:
            self.token_grants += 1
        return self._issue(entry.user)

    def _refresh_grant(self, form: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            entry = self.refresh_tokens.get(form.get("refresh_token", ""))
            valid = entry is not None and not entry.used and self.fake.clock() < entry.expires_at
            if valid and entry is not None:
                entry.used = True
                old = self.fake.tokens.get(entry.access_token)
                if old is not None:
                    old.revoked = True
                self.refresh_grants += 1
        if not valid or entry is None:
            return self._error(
                "bad_refresh_token", "The refresh token passed is incorrect or expired."
            )
        return self._issue(entry.user)

    def _issue(self, user: FakeUser) -> dict[str, Any]:
        now = self.fake.clock()
        access = random_token("ghu_", 36)
        expires = now + ACCESS_TTL if self.expiring else now + 10 * 365 * 86_400
        with self._lock:
            self.fake.tokens[access] = IssuedToken(access, _USER_INSTALLATION, expires)
            self.users_by_token[access] = user
        answer: dict[str, Any] = {"access_token": access, "token_type": "bearer", "scope": ""}
        if self.expiring:
            refresh = random_token("ghr_", 76)
            with self._lock:
                self.refresh_tokens[refresh] = _Refresh(user, access, now + REFRESH_TTL)
            answer.update(
                expires_in=ACCESS_TTL,
                refresh_token=refresh,
                refresh_token_expires_in=REFRESH_TTL,
            )
        return answer

    def _user_of(self, credential: Credential) -> FakeUser | None:
        with self._lock:
            return self.users_by_token.get(credential.key)

    async def _user(self, request: Request, credential: Credential) -> Reply:
        user = self._user_of(credential)
        if user is None:  # an installation token: GET /user is for users
            return error_reply(403, "Resource not accessible by integration")
        return Reply(200, user.profile())

    async def _emails(self, request: Request, credential: Credential) -> Reply:
        user = self._user_of(credential)
        if user is None or self.emails_forbidden:
            return error_reply(403, "Resource not accessible by integration")
        return Reply(200, list(user.emails))

    async def _revoke_grant(self, request: Request, credential: Credential) -> Reply:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return error_reply(401)
        if (
            scheme.lower() != "basic"
            or client_id != self.fake.client_id
            or client_id != request.path_params["client_id"]
            or not secrets.compare_digest(secret, self.client_secret)
        ):
            return error_reply(404)
        try:
            token = json.loads(await request.body()).get("access_token")
        except (ValueError, AttributeError):
            return error_reply(400, "Problems parsing JSON")
        with self._lock:
            user = self.users_by_token.get(token) if isinstance(token, str) else None
            if user is None:
                return error_reply(422, "Validation Failed")
            for access, owner in self.users_by_token.items():
                if owner is user and access in self.fake.tokens:
                    self.fake.tokens[access].revoked = True
            for entry in self.refresh_tokens.values():
                if entry.user is user:
                    entry.used = True
            self.revoked_grants += 1
        return Reply(204)
