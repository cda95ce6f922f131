"""The status API: recorded deliveries and their handler runs, as JSON, behind a bearer token.

``init_app`` mounts it under ``GITHUBAPP_STATUS_PREFIX`` (default /webhooks/github/status)
only when ``GITHUBAPP_STATUS_TOKEN`` is set: without a token there is no route at all.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from .store import DeliveryRecord, DeliveryStore

__all__ = ["build_status_router"]

_STATES = {"received", "queued", "running", "succeeded", "failed", "dead"}


def _serialize(record: DeliveryRecord) -> dict[str, Any]:
    data = asdict(record)
    for run in data["runs"]:
        run["state"] = str(getattr(run["state"], "value", run["state"]))
    if data.get("payload") is None:
        data.pop("payload", None)
    encoded: dict[str, Any] = jsonable_encoder(data)
    return encoded


def build_status_router(
    store: Callable[[], DeliveryStore],
    token: str,
    replay: Callable[[str], list[Any]] | None = None,
) -> APIRouter:
    """A router with GET /deliveries, GET /deliveries/{id}, GET /runs and POST .../replay."""
    expected = token.encode()

    def authorized(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), expected):
            raise HTTPException(
                status_code=401,
                detail="A valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    router = APIRouter(dependencies=[Depends(authorized)], tags=["ghapp-celery status"])

    @router.get("/deliveries")
    async def list_deliveries(
        event: str | None = None,
        state: str | None = None,
        installation_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = Query(default=50, ge=1, le=500),
        cursor: str | None = None,
    ) -> JSONResponse:
        # A time without an offset is ambiguous: refuse it rather than guess a zone.
        if any(t is not None and t.tzinfo is None for t in (since, until)):
            raise HTTPException(
                400, detail="since and until need a UTC offset, e.g. 2024-01-01T00:00:00Z"
            )
        if state is not None and state not in _STATES:
            raise HTTPException(400, detail=f"state must be one of {sorted(_STATES)}")
        try:
            page = await anyio.to_thread.run_sync(
                lambda: store().list_deliveries(
                    event=event,
                    state=state,
                    installation_id=installation_id,
                    since=since,
                    until=until,
                    limit=limit,
                    cursor=cursor,
                )
            )
        except ValueError:
            raise HTTPException(400, detail="Invalid cursor") from None
        return JSONResponse(
            {
                "deliveries": [_serialize(item) for item in page.items],
                "next_cursor": page.next_cursor,
            },
        )

    @router.get("/deliveries/{delivery_id}")
    async def show_delivery(delivery_id: str, payload: bool = False) -> JSONResponse:
        record = await anyio.to_thread.run_sync(
            lambda: store().get_delivery(delivery_id, with_payload=payload)
        )
        if record is None:
            raise HTTPException(404, detail="No such delivery")
        return JSONResponse(_serialize(record))

    @router.get("/runs")
    async def run_counts() -> dict[str, Any]:
        return {"runs": await anyio.to_thread.run_sync(lambda: store().counts())}

    if replay is not None:
        replay_runs = replay

        @router.post("/deliveries/{delivery_id}/replay", status_code=202)
        async def replay_delivery(delivery_id: str) -> dict[str, Any]:
            if (
                await anyio.to_thread.run_sync(
                    lambda: store().get_delivery(delivery_id, with_payload=False)
                )
                is None
            ):
                raise HTTPException(404, detail="No such delivery")
            runs = await anyio.to_thread.run_sync(replay_runs, delivery_id)
            return {"delivery": delivery_id, "replayed": [r.id for r in runs]}

    return router
