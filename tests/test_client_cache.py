"""The ETag cache stores: the in-memory LRU, Redis shared between sessions (a real
redis-server on loopback), and a whole paginated listing revalidated with 304s."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ghapp_celery.github import (
    AsyncGitHubClient,
    CacheEntry,
    GitHubAppAuth,
    GitHubClient,
    MemoryCache,
    RedisCache,
    ResponseCache,
)
from ghapp_celery.github.cache import cache_key
from ghapp_celery.testing import FakeGitHub
from tests._redis import redis_server

pytest_plugins = ["tests._github_fixtures"]

REPO = "octo/hello"


def entry(body: bytes = b"{}", etag: str = '"x"') -> CacheEntry:
    return CacheEntry(etag, None, "application/json", body)


def test_cache_key_is_per_identity_and_media_type_never_per_token() -> None:
    base = cache_key(
        "GET", "https://api.github.com/repos/o/r", "application/json", "installation:1"
    )
    assert base != cache_key(
        "GET", "https://api.github.com/repos/o/r", "application/json", "installation:2"
    )
    assert base != cache_key(
        "GET", "https://api.github.com/repos/o/r", "application/vnd.github.diff", "installation:1"
    )
    assert base == cache_key(
        "get", "https://api.github.com/repos/o/r", "application/json", "installation:1"
    )
    assert len(base) == 64


def test_memory_cache_is_an_lru_with_a_body_limit() -> None:
    cache = MemoryCache(maxsize=2, max_body=10)
    assert isinstance(cache, ResponseCache)
    cache.set("a", entry())
    cache.set("b", entry())
    assert cache.get("a") is not None  # a is now the most recent
    cache.set("c", entry())
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2
    cache.set("big", entry(b"x" * 11))
    assert cache.get("big") is None
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError):
        MemoryCache(maxsize=0)


def test_cache_entries_round_trip_as_json() -> None:
    original = CacheEntry(
        'W/"abc"', "Tue, 01 Jan 2030 00:00:00 GMT", "text/plain", b"\x00\xff", '<u>; rel="next"'
    )
    assert CacheEntry.from_json(original.to_json()) == original


@pytest.mark.anyio
async def test_a_repeated_listing_is_all_304s_and_free(
    fake_github: FakeGitHub, make_auth: Callable[..., GitHubAppAuth], client_options: dict[str, Any]
) -> None:
    fake_github.add_repo(REPO, issues=1000)
    auth = make_auth()
    async with AsyncGitHubClient(auth, fake_github.installation_ids[0], **client_options) as gh:
        first = [i async for i in gh.paginate(f"/repos/{REPO}/issues")]
        spent = gh.rate_limit()
        pages = [p async for p in gh.pages(f"/repos/{REPO}/issues")]
        assert [p.status for p in pages] == [304] * 10  # the cached Link header is followed
        second = [i for p in pages for i in p.data]
        assert second == first
        assert fake_github.not_modified == 10
        assert gh.rate_limit() is not None and spent is not None
        assert gh.rate_limit().remaining == spent.remaining  # type: ignore[union-attr]
    await auth.aclose()


def test_redis_cache_is_shared_between_sessions(
    tmp_path: Path,
    fake_github: FakeGitHub,
    make_auth: Callable[..., GitHubAppAuth],
    client_options: dict[str, Any],
) -> None:
    pytest.importorskip("redis")
    fake_github.add_repo(REPO, issues=1)
    with redis_server(tmp_path / "redis") as url:
        auth = make_auth()
        iid = fake_github.installation_ids[0]
        one = GitHubClient(auth, iid, cache=RedisCache(url, prefix="t:"), **client_options)
        assert one.get(f"/repos/{REPO}/issues/1").status == 200
        # Another process: a new session and a new cache object on the same Redis.
        two = GitHubClient(auth, iid, cache=RedisCache(url, prefix="t:"), **client_options)
        again = two.get(f"/repos/{REPO}/issues/1")
        assert again.status == 304 and again.data["number"] == 1
        one.close()
        two.close()

        import anyio

        async def from_a_coroutine() -> int:
            cache = RedisCache(url, prefix="t:")
            async with AsyncGitHubClient(auth, iid, cache=cache, **client_options) as gh:
                status = (await gh.get(f"/repos/{REPO}/issues/1")).status
            await cache.aclose()
            await auth.aclose()
            return status

        assert anyio.run(from_a_coroutine) == 304
    with pytest.raises(ValueError):
        RedisCache()
