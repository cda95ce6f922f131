"""The conditional-request cache: what a GET last answered, kept to be revalidated with an ETag.

GitHub answers ``304 Not Modified`` (free of primary rate limit when authorized) when the
``If-None-Match`` / ``If-Modified-Since`` we send still matches; the client then serves the body
kept here. Keys are built by :func:`cache_key` from the method, the URL, the ``Accept`` media
type and the *identity* the answer was fetched for (``installation:42``, ``app:1``,
``user:…``) — never the token itself, so the hourly rotation of installation tokens keeps every
entry useful, while two installations never see each other's answers.

Two stores, both usable from threads and coroutines:

* :class:`MemoryCache` — an LRU in the process (the default);
* :class:`RedisCache` — shared by every process, through ``redis`` (``pip install redis``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["CacheEntry", "MemoryCache", "RedisCache", "ResponseCache", "cache_key"]


@dataclass(frozen=True)
class CacheEntry:
    """One cached answer: its validators and its body as GitHub sent it."""

    etag: str | None
    last_modified: str | None
    content_type: str | None
    body: bytes
    link: str | None = None  # a 304 may leave out the Link header; pagination needs it

    def to_json(self) -> str:
        return json.dumps(
            {
                "etag": self.etag,
                "last_modified": self.last_modified,
                "content_type": self.content_type,
                "body": base64.b64encode(self.body).decode("ascii"),
                "link": self.link,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> CacheEntry:
        data = json.loads(raw)
        return cls(
            data.get("etag"),
            data.get("last_modified"),
            data.get("content_type"),
            base64.b64decode(data["body"]),
            data.get("link"),
        )


def cache_key(method: str, url: str, accept: str, identity: str) -> str:
    """A stable key; ``url`` must already carry its query string."""
    raw = "\n".join((method.upper(), url, accept, identity))
    return hashlib.sha256(raw.encode()).hexdigest()


@runtime_checkable
class ResponseCache(Protocol):
    """What the client needs from a cache; implement it to plug in another store."""

    def get(self, key: str) -> CacheEntry | None: ...

    def set(self, key: str, entry: CacheEntry) -> None: ...

    async def aget(self, key: str) -> CacheEntry | None: ...

    async def aset(self, key: str, entry: CacheEntry) -> None: ...


class MemoryCache:
    """An in-process LRU of at most ``maxsize`` entries; bodies over ``max_body`` bytes are not
    kept (a huge file listing would push out hundreds of small answers)."""

    def __init__(self, maxsize: int = 2048, max_body: int = 1 << 20) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.max_body = max_body
        self._data: OrderedDict[str, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is not None:
                self._data.move_to_end(key)
            return entry

    def set(self, key: str, entry: CacheEntry) -> None:
        if len(entry.body) > self.max_body:
            return
        with self._lock:
            self._data[key] = entry
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    async def aget(self, key: str) -> CacheEntry | None:
        return self.get(key)

    async def aset(self, key: str, entry: CacheEntry) -> None:
        self.set(key, entry)


class RedisCache:
    """Entries in Redis under ``prefix``, expiring after ``ttl`` seconds (GitHub's ETags stay
    valid longer, but an entry nobody revalidates for a day is not worth the memory).

    Give it a URL, or clients you already have: ``client`` (``redis.Redis``) for the blocking
    ``GitHubClient``, ``aclient`` (``redis.asyncio.Redis``) for ``AsyncGitHubClient``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        aclient: Any = None,
        prefix: str = "ghapp:etag:",
        ttl: int = 86_400,
        max_body: int = 1 << 20,
    ) -> None:
        if url is None and client is None and aclient is None:
            raise ValueError("RedisCache needs a url or a client")
        self.url = url
        self._client = client
        self._aclient = aclient
        self.prefix = prefix
        self.ttl = ttl
        self.max_body = max_body

    def _sync(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url or "redis://localhost:6379/0")
        return self._client

    def _async(self) -> Any:
        if self._aclient is None:
            import redis.asyncio

            self._aclient = redis.asyncio.Redis.from_url(self.url or "redis://localhost:6379/0")
        return self._aclient

    def get(self, key: str) -> CacheEntry | None:
        raw = self._sync().get(self.prefix + key)
        return None if raw is None else CacheEntry.from_json(raw)

    def set(self, key: str, entry: CacheEntry) -> None:
        if len(entry.body) <= self.max_body:
            self._sync().set(self.prefix + key, entry.to_json(), ex=self.ttl)

    async def aget(self, key: str) -> CacheEntry | None:
        raw = await self._async().get(self.prefix + key)
        return None if raw is None else CacheEntry.from_json(raw)

    async def aset(self, key: str, entry: CacheEntry) -> None:
        if len(entry.body) <= self.max_body:
            await self._async().set(self.prefix + key, entry.to_json(), ex=self.ttl)

    async def aclose(self) -> None:
        """Close the connections this cache opened itself (not clients it was given)."""
        if self._aclient is not None and self.url is not None:
            await self._aclient.aclose()
            self._aclient = None
        if self._client is not None and self.url is not None:
            self._client.close()
            self._client = None
