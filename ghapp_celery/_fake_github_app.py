"""FakeGitHub's App endpoints: the app, its installations, and installation tokens."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ghapp_celery._fake_github_api import paginate_reply
from ghapp_celery._fake_github_parts import (
    PERMISSION_LEVELS,
    TOKEN_ALPHABET,
    Credential,
    FakeClock,
    IssuedToken,
    Reply,
    app_json,
    error_reply,
    installation_json,
    iso,
)

if TYPE_CHECKING:
    from ghapp_celery._fake_github_more import _More

__all__ = ["FakeAppEndpointsMixin"]


class FakeAppEndpointsMixin:
    """Endpoints FakeGitHub gets from here; the attributes are FakeGitHub's."""

    _lock: threading.Lock
    _api: _More
    clock: FakeClock
    app_id: int
    client_id: str
    slug: str
    created: int
    permissions: dict[str, str]
    events: list[str]
    installation_ids: list[int]
    token_requests: list[int]
    token_ttl: int
    token_format: str
    tokens: dict[str, IssuedToken]

    def _installation(self, installation_id: int) -> dict[str, Any]:
        return installation_json(
            installation_id=installation_id,
            n=self.installation_ids.index(installation_id) + 1,
            app_id=self.app_id,
            slug=self.slug,
            created=self.created,
            permissions=self.permissions,
            events=self.events,
        )

    async def _get_app(self, request: Request, credential: Credential) -> Reply:
        body = app_json(
            app_id=self.app_id,
            client_id=self.client_id,
            slug=self.slug,
            created=self.created,
            permissions=self.permissions,
            events=self.events,
            installations_count=len(self.installation_ids),
        )
        return Reply(200, body)

    async def _list_installations(self, request: Request, credential: Credential) -> Reply:
        return paginate_reply(request, [self._installation(i) for i in self.installation_ids])

    async def _get_inst(self, request: Request, credential: Credential) -> Reply:
        installation_id = int(request.path_params["installation_id"])
        if installation_id not in self.installation_ids:
            return error_reply(404)
        return Reply(200, self._installation(installation_id))

    async def _create_token(self, request: Request, credential: Credential) -> Reply:
        installation_id = int(request.path_params["installation_id"])
        with self._lock:
            self.token_requests.append(installation_id)
        if installation_id not in self.installation_ids:
            return error_reply(404)
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return error_reply(400, "Problems parsing JSON")
        if not isinstance(body, dict):
            return error_reply(400, "Body should be a JSON object")
        permissions = body.get("permissions") or dict(self.permissions)
        if not isinstance(permissions, dict) or any(
            name not in self.permissions or level not in PERMISSION_LEVELS
            for name, level in permissions.items()
        ):
            return error_reply(
                422, "The permissions requested are not granted to this installation."
            )
        expires = int(self.clock()) + self.token_ttl
        token = self._new_token(installation_id, expires)
        with self._lock:
            self.tokens[token] = IssuedToken(token, installation_id, expires)
        return Reply(
            201,
            {
                "token": token,
                "expires_at": iso(expires),
                "permissions": permissions,
                "repository_selection": "all",
            },
        )

    async def _repositories(self, request: Request, credential: Credential) -> Reply:
        return await self._api.installation_repositories(request, credential)

    async def _revoke(self, request: Request, credential: Credential) -> Reply:
        with self._lock:
            self.tokens[credential.key].revoked = True
        return Reply(204)

    def _new_token(self, installation_id: int, expires: int) -> str:
        if self.token_format == "classic":  # noqa: S105  (a format's name, not a secret)
            return "ghs_" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(36))

        # Shaped like GitHub's stateless format: the app id, then a JWT (only its shape: this
        # fake keeps its tokens in a table, so the signature is random bytes).
        def segment(value: bytes) -> str:
            return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

        jti = secrets.token_hex(8)
        claims = {"iss": self.app_id, "inst": installation_id, "exp": expires, "jti": jti}
        header = b'{"alg":"RS256","typ":"JWT"}'
        parts = (header, json.dumps(claims).encode(), secrets.token_bytes(256))
        jwt = ".".join(segment(part) for part in parts)
        return f"ghs_{self.app_id}_{jwt}"
