"""One GitHubSession per (app credentials, event loop): how handlers share pools and caches.

``client_for(auth, installation_id)`` is what ``event.github`` returns. Inside a Celery worker
every coroutine handler runs on the process's one event loop (``tasks/loop.py``), so every
handler of the process shares one connection pool, one ETag cache and one rate-limit tracker; in
the web process the same holds for the server's loop. Blocking code gets a blocking twin from
``sync_client_for``, sharing the cache and the rate-limit state of a per-auth session.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ghapp_celery.github._client_session import GitHubSession
from ghapp_celery.github.client import AsyncGitHubClient
from ghapp_celery.github.sync_client import GitHubClient

if TYPE_CHECKING:  # auth.py mints through the sessions made here
    from ghapp_celery.github.auth import GitHubAppAuth

__all__ = [
    "aclose_sessions",
    "blocking_session_for",
    "client_for",
    "configure_sessions",
    "session_for",
    "session_resource",
    "sync_client_for",
]

_lock = threading.Lock()
_async: weakref.WeakKeyDictionary[
    GitHubAppAuth, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GitHubSession]
] = weakref.WeakKeyDictionary()
_sync: weakref.WeakKeyDictionary[GitHubAppAuth, GitHubSession] = weakref.WeakKeyDictionary()
_options: weakref.WeakKeyDictionary[GitHubAppAuth, dict[str, Any]] = weakref.WeakKeyDictionary()


def configure_sessions(auth: GitHubAppAuth, **options: Any) -> None:
    """Set the GitHubSession options (cache, limits, timeout, ...) for sessions made later."""
    with _lock:
        _options[auth] = dict(options)


def _new_session(auth: GitHubAppAuth) -> GitHubSession:
    options = dict(_options.get(auth, {}))
    options.setdefault("user_agent", auth.user_agent)
    options.setdefault("clock", auth.clock)
    options.setdefault("timeout", auth.timeout)
    # The auth's own transports (a test's mock, a proxy) carry its sessions' calls too: the
    # token mints go through these very sessions.
    for name, transport in auth.transports().items():
        if transport is not None:
            options.setdefault(name, transport)
    return GitHubSession(auth.base_url, **options)


def session_for(auth: GitHubAppAuth) -> GitHubSession:
    """The session for ``auth`` on the running loop (or the blocking one outside a loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return blocking_session_for(auth)
    with _lock:
        per_loop = _async.get(auth)
        if per_loop is None:
            per_loop = _async[auth] = weakref.WeakKeyDictionary()
        session = per_loop.get(loop)
        if session is None:
            session = per_loop[loop] = _new_session(auth)
        return session


def blocking_session_for(auth: GitHubAppAuth) -> GitHubSession:
    """The session for ``auth``'s blocking calls, whichever thread makes them (its pool is a
    thread-safe ``httpx.Client``)."""
    with _lock:
        session = _sync.get(auth)
        if session is None:
            session = _sync[auth] = _new_session(auth)
        return session


def client_for(auth: GitHubAppAuth, installation_id: int | None) -> AsyncGitHubClient:
    """An AsyncGitHubClient for the installation (the app itself when None), on the shared
    session of the running loop. Cheap: call it per handler, never close it."""
    return AsyncGitHubClient(auth, installation_id, session=session_for(auth))


def sync_client_for(auth: GitHubAppAuth, installation_id: int | None) -> GitHubClient:
    """The blocking twin of ``client_for`` (call it outside an event loop)."""
    return GitHubClient(auth, installation_id, session=blocking_session_for(auth))


async def aclose_sessions(auth: GitHubAppAuth | None = None) -> None:
    """Close the sessions of the running loop (for ``auth``, or all): the worker's shutdown."""
    loop = asyncio.get_running_loop()
    with _lock:
        owners = [auth] if auth is not None else list(_async.keys())
        found: list[GitHubSession] = []
        for owner in owners:
            per_loop = _async.get(owner)
            session = per_loop.pop(loop, None) if per_loop is not None else None
            if session is not None:
                found.append(session)
    for session in found:
        await session.aclose()


def session_resource(
    auth: GitHubAppAuth,
) -> tuple[Callable[[], GitHubSession], Callable[[Any], Awaitable[None]]]:
    """(factory, closer) for ``worker_loop.register_resource``: the worker loop then creates the
    process's session on its own thread and closes it at shutdown::

        worker_loop.register_resource("github", *session_resource(app.auth))
    """

    def factory() -> GitHubSession:
        return session_for(auth)

    async def closer(session: Any) -> None:
        loop = asyncio.get_running_loop()
        with _lock:
            per_loop = _async.get(auth)
            if per_loop is not None and per_loop.get(loop) is session:
                del per_loop[loop]
        await session.aclose()

    return factory, closer
