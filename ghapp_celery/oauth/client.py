"""Credentials for an ``AsyncGitHubClient`` acting as a signed-in user.

``RefreshingUserCredentials`` asks its token source for the user's token before every request,
so a token refreshed meanwhile (by this or another process) is picked up and an expired one is
refreshed first. When GitHub answers 401 it asks the source once more, naming the refused token,
so the source can refresh it even though its stored expiry says it is still good (the client
retries once with the new token; a second 401 raises ``GithubUnauthorized``).

Its ``identity`` (``user:<GitHub user id>``) keys the ETag cache, the rate-limit tracking and
the concurrency cap of the shared session; the token itself never becomes a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["RefreshingUserCredentials", "TokenSource"]

# ``await source(None)``: the current token (refreshed first when it has expired);
# ``await source(token)``: GitHub refused ``token`` (401), refresh it if it is still current.
TokenSource = Callable[[str | None], Awaitable[str]]


class RefreshingUserCredentials:
    """A ``ghapp_celery.github`` ``Credentials`` whose token comes from an async source."""

    def __init__(self, token_source: TokenSource, identity: str) -> None:
        if not identity:
            raise ValueError("identity must not be empty")
        self._source = token_source
        self.identity = identity
        self._refused: str | None = None

    def __repr__(self) -> str:
        return f"RefreshingUserCredentials(identity={self.identity!r})"

    def authorization(self) -> tuple[str, str]:
        # The token source is a coroutine (store reads, the refresh call to GitHub).
        raise RuntimeError("a user's refreshing credentials work with AsyncGitHubClient only")

    async def aauthorization(self) -> tuple[str, str]:
        refused, self._refused = self._refused, None
        token = await self._source(refused)
        return f"Bearer {token}", token

    def refused(self, secret: str) -> bool:
        """GitHub said 401 to ``secret``: the next ``aauthorization`` asks for a fresh one."""
        self._refused = secret
        return True
