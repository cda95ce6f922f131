"""AsyncGitHubClient: GitHub's REST and GraphQL APIs for handlers and workers.

::

    async with AsyncGitHubClient(auth, installation_id) as gh:
        issue = (await gh.get("/repos/octo/hello/issues/1")).data
        async for pr in gh.paginate("/repos/octo/hello/pulls", {"state": "all"}):
            ...
        await gh.create_comment("octo/hello", 1, "Thanks!")
        data = await gh.graphql("query { viewer { login } }")

Every call: the installation's token from the shared ``GitHubAppAuth`` cache (renewed before
expiry, and once after a 401); ``If-None-Match`` from the ETag cache (a 304 serves the kept body
and costs no primary rate limit); a refusal *before sending* when the rate-limit bucket is known
to be empty; a per-identity concurrency cap; retries with jittered backoff for 5xx, timeouts and
connection errors (never for other 4xx); and one error tree (``ghapp_celery.exceptions``).

``GitHubClient`` (``ghapp_celery.github.sync_client``) is the blocking twin with the same methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from types import TracebackType
from typing import Any, Self

import httpx

from ghapp_celery.github._client_base import ClientBase
from ghapp_celery.github._client_core import GitHubResponse
from ghapp_celery.github._client_session import REFRESH, GitHubSession
from ghapp_celery.github.helpers import GitHubHelpers
from ghapp_celery.github.pagination import (
    connection_at,
    connection_nodes,
    next_cursor,
    page_items,
    with_per_page,
)

__all__ = ["AsyncGitHubClient", "GitHubSession"]


class AsyncGitHubClient(ClientBase, GitHubHelpers[Awaitable[Any], AsyncIterator[Any]]):
    """The async client. Pick who it acts as:

    * ``AsyncGitHubClient(auth, installation_id)`` — an installation (most handlers);
    * ``AsyncGitHubClient(auth)`` — the app itself, with a JWT (``/app/...``);
    * ``AsyncGitHubClient(token="ghu_...", identity="user:42")`` — a user or other token.

    ``base_url`` defaults to ``auth.base_url`` (``https://api.github.com``); for GitHub
    Enterprise Server give ``https://HOST`` (REST at ``/api/v3``, GraphQL at ``/api/graphql``).
    Pass ``session=`` to share pools, cache and rate-limit state with other clients, or any
    ``GitHubSession`` option (``timeout``, ``limits``, ``cache``, ``retry``,
    ``rate_limit_wait``, ``max_concurrency``, ``clock``, ``asleep``, ``async_transport``, ...)
    to get a private session that ``aclose()`` closes.
    """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if this client made it (a shared session is its owner's)."""
        if self._owns_session:
            await self.session.aclose()

    # -- REST --------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        cache: bool = True,
        retry: bool | None = None,
    ) -> GitHubResponse:
        """Send one call and return the decoded answer, or raise from the error tree.

        ``url`` is a path under the API root (``/repos/o/r``) or an absolute URL on it.
        ``cache=False`` skips the ETag cache. ``retry=True`` retries 5xx and transport failures
        even for a POST, ``retry=False`` never retries; by default only idempotent methods are
        retried (and any method whose connection was refused before it was sent).
        """
        session, creds = self.session, self.credentials
        exchange = self._exchange(method, url, params, headers, cache, retry)
        http = session.ahttp()
        entry = None
        if exchange.key is not None and session.cache is not None:
            entry = await session.cache.aget(exchange.key)
        while True:
            wait = exchange.before_send()
            if wait:
                await session.asleep(wait)
                continue
            authorization, secret = await creds.aauthorization()
            prepared = exchange.prepare(authorization, entry)
            try:
                async with session.asemaphore(creds.identity):
                    raw = await http.request(
                        exchange.method,
                        exchange.url,
                        headers=prepared.headers,
                        json=json,
                        content=content,
                    )
            except httpx.TransportError as exc:
                await session.asleep(exchange.after_transport_error(exc))
                continue
            outcome = exchange.after_response(raw, secret, entry)
            if isinstance(outcome, GitHubResponse):
                stored = exchange.entry_to_store(outcome, raw)
                if stored is not None and session.cache is not None and exchange.key:
                    await session.cache.aset(exchange.key, stored)
                return outcome
            if outcome != REFRESH:
                await session.asleep(float(outcome))

    async def get(
        self, url: str, params: dict[str, Any] | None = None, **kw: Any
    ) -> GitHubResponse:
        return await self.request("GET", url, params=params, **kw)

    async def post(self, url: str, json: Any = None, **kw: Any) -> GitHubResponse:
        return await self.request("POST", url, json=json, **kw)

    async def patch(self, url: str, json: Any = None, **kw: Any) -> GitHubResponse:
        return await self.request("PATCH", url, json=json, **kw)

    async def put(self, url: str, json: Any = None, **kw: Any) -> GitHubResponse:
        return await self.request("PUT", url, json=json, **kw)

    async def delete(self, url: str, json: Any = None, **kw: Any) -> GitHubResponse:
        return await self.request("DELETE", url, json=json, **kw)

    # -- pagination --------------------------------------------------------------------------

    async def pages(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        per_page: int | None = 100,
        max_pages: int | None = None,
        **kw: Any,
    ) -> AsyncIterator[GitHubResponse]:
        """Each page's response, following ``Link: rel="next"`` until the last one."""
        response = await self.get(url, with_per_page(params, per_page), **kw)
        count = 1
        yield response
        while response.next_url and (max_pages is None or count < max_pages):
            response = await self.get(response.next_url, **kw)
            count += 1
            yield response

    async def paginate(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        per_page: int | None = 100,
        max_pages: int | None = None,
        max_items: int | None = None,
        items_key: str | None = None,
        **kw: Any,
    ) -> AsyncIterator[Any]:
        """Every item across pages (a list answer, or the ``items`` / ``items_key`` list of an
        object answer such as search), stopping after ``max_pages`` or ``max_items``."""
        if max_items is not None and max_items <= 0:
            return
        seen = 0
        async for page in self.pages(url, params, per_page=per_page, max_pages=max_pages, **kw):
            for item in page_items(page.data, items_key):
                yield item
                seen += 1
                if max_items is not None and seen >= max_items:
                    return

    # -- GraphQL -----------------------------------------------------------------------------

    async def graphql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """Run a query or mutation; return ``data``. A body with ``errors`` raises GraphQLError
        (RateLimited for GitHub's GraphQL rate limit), though the HTTP status is 200."""
        response = await self.request(
            "POST",
            self.session.graphql_url,
            json=self._graphql_body(query, variables),
            cache=False,
            retry=None if self._is_mutation(query) else True,
        )
        return self._graphql_result(response)

    async def graphql_paginate(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        path: str,
        cursor_variable: str = "cursor",
        max_pages: int | None = None,
        max_items: int | None = None,
    ) -> AsyncIterator[Any]:
        """Every node of the connection at ``path`` (``"repository.issues"``). The query takes
        ``$cursor: String`` and selects ``pageInfo { hasNextPage endCursor }`` and ``nodes``."""
        values = dict(variables or {})
        values.setdefault(cursor_variable, None)
        pages = seen = 0
        while True:
            data = await self.graphql(query, values)
            pages += 1
            connection = connection_at(data, path)
            for node in connection_nodes(connection):
                yield node
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            cursor = next_cursor(connection)
            if cursor is None or (max_pages is not None and pages >= max_pages):
                return
            values[cursor_variable] = cursor

    # -- what the helpers call ---------------------------------------------------------------

    async def _acall(self, method: str, url: str, **kw: Any) -> Any:
        return (await self.request(method, url, **kw)).data

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Awaitable[Any]:
        return self._acall(method, url, params=params, json=json, headers=headers)

    def _list(
        self, url: str, params: dict[str, Any] | None = None, *, max_items: int | None = None
    ) -> AsyncIterator[Any]:
        return self.paginate(url, params, max_items=max_items)
