"""GitHubClient: the blocking twin of AsyncGitHubClient, for scripts and sync handlers.

Same constructor, same methods, same rules (it drives the same ``Exchange``); only the I/O is
blocking (``httpx.Client``) and listings are plain iterators::

    with GitHubClient(auth, installation_id) as gh:
        for issue in gh.list_issues("octo/hello", max_items=50):
            ...
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

import httpx

from ghapp_celery.github._client_base import ClientBase
from ghapp_celery.github._client_core import GitHubResponse
from ghapp_celery.github._client_session import REFRESH
from ghapp_celery.github.helpers import GitHubHelpers
from ghapp_celery.github.pagination import (
    connection_at,
    connection_nodes,
    next_cursor,
    page_items,
    with_per_page,
)

__all__ = ["GitHubClient"]


class GitHubClient(ClientBase, GitHubHelpers[Any, Iterator[Any]]):
    """Blocking client; see AsyncGitHubClient for the constructor and every method."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def request(
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
        session, creds = self.session, self.credentials
        exchange = self._exchange(method, url, params, headers, cache, retry)
        http = session.http()
        entry = None
        if exchange.key is not None and session.cache is not None:
            entry = session.cache.get(exchange.key)
        while True:
            wait = exchange.before_send()
            if wait:
                session.sleep(wait)
                continue
            authorization, secret = creds.authorization()
            prepared = exchange.prepare(authorization, entry)
            try:
                with session.semaphore(creds.identity):
                    raw = http.request(
                        exchange.method,
                        exchange.url,
                        headers=prepared.headers,
                        json=json,
                        content=content,
                    )
            except httpx.TransportError as exc:
                session.sleep(exchange.after_transport_error(exc))
                continue
            outcome = exchange.after_response(raw, secret, entry)
            if isinstance(outcome, GitHubResponse):
                stored = exchange.entry_to_store(outcome, raw)
                if stored is not None and session.cache is not None and exchange.key:
                    session.cache.set(exchange.key, stored)
                return outcome
            if outcome != REFRESH:
                session.sleep(float(outcome))

    def get(self, url: str, params: dict[str, Any] | None = None, **kw: Any) -> GitHubResponse:
        return self.request("GET", url, params=params, **kw)

    def post(self, url: str, json: Any = None, **kw: Any) -> GitHubResponse:
        return self.request("POST", url, json=json, **kw)

    def patch(self, url: str, json: Any = None, **kw: Any) -> GitHubResponse:
        return self.request("PATCH", url, json=json, **kw)

    def put(self, url: str, json: Any = None, **kw: Any) -> GitHubResponse:
        return self.request("PUT", url, json=json, **kw)

    def delete(self, url: str, json: Any = None, **kw: Any) -> GitHubResponse:
        return self.request("DELETE", url, json=json, **kw)

    def pages(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        per_page: int | None = 100,
        max_pages: int | None = None,
        **kw: Any,
    ) -> Iterator[GitHubResponse]:
        response = self.get(url, with_per_page(params, per_page), **kw)
        count = 1
        yield response
        while response.next_url and (max_pages is None or count < max_pages):
            response = self.get(response.next_url, **kw)
            count += 1
            yield response

    def paginate(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        per_page: int | None = 100,
        max_pages: int | None = None,
        max_items: int | None = None,
        items_key: str | None = None,
        **kw: Any,
    ) -> Iterator[Any]:
        if max_items is not None and max_items <= 0:
            return
        seen = 0
        for page in self.pages(url, params, per_page=per_page, max_pages=max_pages, **kw):
            for item in page_items(page.data, items_key):
                yield item
                seen += 1
                if max_items is not None and seen >= max_items:
                    return

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        response = self.request(
            "POST",
            self.session.graphql_url,
            json=self._graphql_body(query, variables),
            cache=False,
            retry=None if self._is_mutation(query) else True,
        )
        return self._graphql_result(response)

    def graphql_paginate(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        path: str,
        cursor_variable: str = "cursor",
        max_pages: int | None = None,
        max_items: int | None = None,
    ) -> Iterator[Any]:
        values = dict(variables or {})
        values.setdefault(cursor_variable, None)
        pages = seen = 0
        while True:
            data = self.graphql(query, values)
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

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return self.request(method, url, params=params, json=json, headers=headers).data

    def _list(
        self, url: str, params: dict[str, Any] | None = None, *, max_items: int | None = None
    ) -> Iterator[Any]:
        return self.paginate(url, params, max_items=max_items)
