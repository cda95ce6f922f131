"""``on_login`` / ``on_logout`` callbacks: sync or async, called with (user, request).

An ``on_login`` callback may refuse a user by raising ``HTTPException`` (403, say): the session
just issued is revoked and the callback's status and detail are answered. Sync callbacks run in
a worker thread, so a blocking one never stalls the event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

__all__ = ["Hooks"]

Callback = Callable[[dict[str, Any], Request], Any]


async def _call(func: Callback, user: dict[str, Any], request: Request) -> None:
    if inspect.iscoroutinefunction(func):
        await func(user, request)
        return
    result = await run_in_threadpool(func, user, request)
    if inspect.isawaitable(result):
        await result


class Hooks:
    def __init__(self) -> None:
        self.login: list[Callback] = []
        self.logout: list[Callback] = []

    async def run_login(self, user: dict[str, Any], request: Request) -> None:
        for func in self.login:
            await _call(func, user, request)

    async def run_logout(self, claims: dict[str, Any], request: Request) -> None:
        for func in self.logout:
            await _call(func, claims, request)
