"""A small async REST client acting as a signed-in user.

It asks its token source for the user's token before every request, so a token refreshed
meanwhile (by this or another process) is picked up, and an expired one is refreshed first.
Headers and error mapping are the foundation's (``github/_http.py``), so a failed call raises
the same exceptions as the app's own calls (GithubUnauthorized, GithubAppUnkownObject, ...).

It stands in until ``ghapp_celery.github.client.AsyncGitHubClient`` exists; the surface it
offers (``get/post/patch/put/delete`` answering decoded JSON, ``request`` answering the
response) is the part of that client's API a user-acting route needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import httpx

from ..github._http import error_for, github_headers, transport_error

__all__ = ["UserGitHub"]

TokenSource = Callable[[], Awaitable[str]]
_USER_AGENT = "ghapp-celery-oauth"


class UserGitHub:
    """``await gh.get("/user")``: GitHub's REST API with the user's (refreshed) token."""

    def __init__(self, api_url: str, token: TokenSource, *, timeout: float = 10.0) -> None:
        self.base_url = api_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"<UserGitHub {self.base_url}>"

    async def __aenter__(self) -> UserGitHub:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _url(self, path: str) -> str:
        if path.startswith(("https://", "http://")):
            if not path.startswith(self.base_url + "/"):
                # The user's token goes to the configured API only, never to another host.
                raise ValueError("UserGitHub only calls its own API base URL")
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request as the user; raise the mapped error for a non-2xx answer."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        headers = github_headers(f"Bearer {await self._token()}", _USER_AGENT)
        headers.update(kwargs.pop("headers", None) or {})
        try:
            response = await self._client.request(
                method, self._url(path), headers=headers, **kwargs
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc) from None
        if not response.is_success:
            raise error_for(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        return response.json() if response.content else None

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self._json("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self._json("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Any:
        return await self._json("PATCH", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Any:
        return await self._json("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self._json("DELETE", path, **kwargs)
