"""FakeGitHub's app and installation endpoints: the app, its installations, installation tokens
(minted, listed repositories, revoked), and which installation holds a repository."""

from __future__ import annotations

import base64
import json
import secrets

from starlette.requests import Request

from ghapp_celery.testing._keys import random_token
from ghapp_celery.testing._replies import error_reply, paginate_reply, read_json_object
from ghapp_celery.testing._state import FakeState
from ghapp_celery.testing._types import Credential, Endpoint, IssuedToken, Reply, iso

__all__ = ["AppEndpoints"]

PERMISSION_LEVELS = frozenset({"read", "write", "admin"})


class AppEndpoints:
    """``/app``, ``/app/installations...``, ``/installation/...`` and a repo's installation."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def endpoints(self) -> list[Endpoint]:
        tokens = "/app/installations/{installation_id:int}/access_tokens"
        return [
            Endpoint("/app", self.get_app, auth="jwt"),
            Endpoint("/app/installations", self.list_installations, auth="jwt"),
            Endpoint("/app/installations/{installation_id:int}", self.get_installation, auth="jwt"),
            Endpoint(tokens, self.create_token, ("POST",), "jwt"),
            Endpoint("/installation/repositories", self.installation_repositories),
            Endpoint("/installation/token", self.revoke, ("DELETE",)),
            Endpoint("/repos/{owner}/{repo}/installation", self.repo_installation, auth="jwt"),
        ]

    async def get_app(self, request: Request, credential: Credential) -> Reply:
        return Reply(200, self.state.app_json())

    async def list_installations(self, request: Request, credential: Credential) -> Reply:
        ids = self.state.installation_ids
        return paginate_reply(request, [self.state.installation_json(i) for i in ids])

    async def get_installation(self, request: Request, credential: Credential) -> Reply:
        installation_id = int(request.path_params["installation_id"])
        if installation_id not in self.state.installation_ids:
            return error_reply(404)
        return Reply(200, self.state.installation_json(installation_id))

    async def create_token(self, request: Request, credential: Credential) -> Reply:
        state = self.state
        installation_id = int(request.path_params["installation_id"])
        with state._lock:
            state.token_requests.append(installation_id)
        if installation_id not in state.installation_ids:
            return error_reply(404)
        body = await read_json_object(request)
        if isinstance(body, Reply):
            return body
        permissions = body.get("permissions") or dict(state.permissions)
        if not isinstance(permissions, dict) or any(
            name not in state.permissions or level not in PERMISSION_LEVELS
            for name, level in permissions.items()
        ):
            return error_reply(
                422, "The permissions requested are not granted to this installation."
            )
        expires = int(state.clock()) + state.token_ttl
        token = self._new_token(installation_id, expires)
        with state._lock:
            state.tokens[token] = IssuedToken(token, installation_id, expires)
        return Reply(
            201,
            {
                "token": token,
                "expires_at": iso(expires),
                "permissions": permissions,
                "repository_selection": "all",
            },
        )

    async def installation_repositories(self, request: Request, credential: Credential) -> Reply:
        repos = [r.json() for r in self.state.repos.values()]
        reply = paginate_reply(request, repos, wrap="repositories")
        reply.body["repository_selection"] = "all"
        return reply

    async def revoke(self, request: Request, credential: Credential) -> Reply:
        with self.state._lock:
            self.state.tokens[credential.key].revoked = True
        return Reply(204)

    async def repo_installation(self, request: Request, credential: Credential) -> Reply:
        if self.state.repo_of(request) is None:
            return error_reply(404)
        return Reply(200, self.state.installation_json(self.state.installation_ids[0]))

    def _new_token(self, installation_id: int, expires: int) -> str:
        app_id = self.state.app_id
        if self.state.token_format == "classic":  # noqa: S105  (a format's name, not a secret)
            return random_token("ghs_", 36)

        # Shaped like GitHub's stateless format: the app id, then a JWT (only its shape: this
        # fake keeps its tokens in a table, so the signature is random bytes).
        def segment(value: bytes) -> str:
            return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

        jti = secrets.token_hex(8)
        claims = {"iss": app_id, "inst": installation_id, "exp": expires, "jti": jti}
        header = b'{"alg":"RS256","typ":"JWT"}'
        parts = (header, json.dumps(claims).encode(), secrets.token_bytes(256))
        jwt = ".".join(segment(part) for part in parts)
        return f"ghs_{app_id}_{jwt}"
