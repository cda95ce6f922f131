"""Who a client acts as: the app (a JWT), an installation (its tokens), or a user token.

Each credential names an ``identity`` (``app:12345``, ``installation:42``, ``user:…``) under
which rate limits, the ETag cache and the concurrency cap are kept. The identity never contains
the token, so an installation's hourly token rotation changes nothing but the header.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # auth.py imports the clients to mint through them
    from ghapp_celery.github.auth import GitHubAppAuth

__all__ = ["AppJWTCredentials", "Credentials", "InstallationCredentials", "TokenCredentials"]


class Credentials(Protocol):
    identity: str

    def authorization(self) -> tuple[str, str]:
        """(Authorization header value, the secret inside it) for a blocking call."""
        ...

    async def aauthorization(self) -> tuple[str, str]:
        """The same, for a coroutine (mints an installation token without blocking the loop)."""
        ...

    def refused(self, secret: str) -> bool:
        """GitHub said 401 to ``secret``: forget it; True when a fresh one is worth a retry."""
        ...


class AppJWTCredentials:
    """The app itself: an RS256 JWT, made fresh for every request (``/app/...`` endpoints)."""

    def __init__(self, auth: GitHubAppAuth) -> None:
        self.auth = auth
        self.identity = f"app:{auth.app_id}"

    def authorization(self) -> tuple[str, str]:
        token = self.auth.create_jwt()
        return f"Bearer {token}", token

    async def aauthorization(self) -> tuple[str, str]:
        return self.authorization()

    def refused(self, secret: str) -> bool:
        return False  # a new JWT would be refused the same way (bad key, clock drift)


class InstallationCredentials:
    """An installation: tokens from the shared ``GitHubAppAuth`` cache (minted once per
    installation however many clients ask), renewed before expiry and once after a 401."""

    def __init__(self, auth: GitHubAppAuth, installation_id: int) -> None:
        self.auth = auth
        self.installation_id = int(installation_id)
        self.identity = f"installation:{self.installation_id}"

    def authorization(self) -> tuple[str, str]:
        token = self.auth.get_access_token(self.installation_id).token
        return f"token {token}", token

    async def aauthorization(self) -> tuple[str, str]:
        token = (await self.auth.aget_access_token(self.installation_id)).token
        return f"token {token}", token

    def refused(self, secret: str) -> bool:
        self.auth.invalidate(self.installation_id, secret)
        return True


class TokenCredentials:
    """A fixed token (a user access token, a PAT). ``identity`` defaults to a digest of the
    token so the cache and limits stay per user without keeping the token itself as a key."""

    def __init__(self, token: str, identity: str | None = None) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self._token = token
        digest = hashlib.sha256(token.encode()).hexdigest()[:16]
        self.identity = identity or f"user:{digest}"

    def authorization(self) -> tuple[str, str]:
        return f"Bearer {self._token}", self._token

    async def aauthorization(self) -> tuple[str, str]:
        return self.authorization()

    def refused(self, secret: str) -> bool:
        return False

    def __repr__(self) -> str:
        return f"TokenCredentials(identity={self.identity!r})"
