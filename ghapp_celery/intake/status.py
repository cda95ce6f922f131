"""The status API: recorded deliveries and their handler runs, as JSON, behind a bearer token.

``init_app`` mounts it under ``GITHUBAPP_STATUS_PREFIX`` (default /webhooks/github/status)
only when ``GITHUBAPP_STATUS_TOKEN`` is set: without a token there is no route at all.

Every error is JSON in the webhook route's shape, ``{"status": "ERROR", "error": "<code>",
"description": "..."}``: 401 ``unauthorized``, 404
``not_found``, 503 ``store_unavailable``, and 400 ``invalid_<parameter>`` for any query or path
value the API cannot use, on every database alike: not a number, out of range (integers must
fit a signed 64-bit column), a time without an offset or beyond what a UTC time can hold, a
NUL byte (which PostgreSQL text cannot hold), a cursor this store did not make. FastAPI's own
422 answers are turned into these 400s by the router's route class, so the webhook route and
the rest of the user's app keep FastAPI's behaviour.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import Response

from ..exceptions import StatusError
from ..store import decode_cursor
from ..store.errors import StoreUnavailable

if TYPE_CHECKING:
    from ..store import DeliveryRecord, DeliveryStore

__all__ = ["StatusError", "StatusRoute", "build_status_router"]

LOG = logging.getLogger("ghapp_celery.status")

_STATES = {"received", "queued", "running", "succeeded", "failed", "dead"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_LIMIT = 500
_TIME_HINT = "an ISO 8601 time with a UTC offset, e.g. 2024-01-01T00:00:00Z"

# What each parameter must be, for the 400 answers (FastAPI's own messages echo the input).
_EXPECTED = {
    "installation_id": f"an integer from {INT64_MIN} to {INT64_MAX}",
    "limit": f"an integer from 1 to {MAX_LIMIT}",
    "since": _TIME_HINT,
    "until": _TIME_HINT,
    "payload": "true or false",
}


def _answer(error: StatusError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class StatusErrorBody(BaseModel):
    """The body of every non-2xx answer, as the OpenAPI schema shows it."""

    status: str = "ERROR"
    error: str
    description: str


#: Declared on every route: a "4XX" entry also stops FastAPI from listing the 422 that
#: StatusRoute never answers (it adds one unless 422, 4XX or default is declared).
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "model": StatusErrorBody,
        "description": "400 invalid_<parameter>, 401 unauthorized, 404 not_found",
    },
    503: {"model": StatusErrorBody, "description": "store_unavailable"},
}


def _invalid(name: str, detail: str | None = None) -> StatusError:
    expected = _EXPECTED.get(name)
    message = detail or (f"{name} must be {expected}" if expected else f"{name} is invalid")
    return StatusError(400, f"invalid_{name}", message)


def _from_validation(exc: RequestValidationError) -> StatusError:
    """The first problem FastAPI found, named by its parameter; never the input itself."""
    for error in exc.errors():
        loc: Sequence[Any] = error.get("loc") or ()
        if len(loc) >= 2 and loc[0] in ("query", "path") and isinstance(loc[1], str):
            return _invalid(loc[1])
    return StatusError(400, "invalid_request", "The request's parameters are invalid")


class StatusRoute(APIRoute):
    """The status API's route class: its errors in its own shape, whatever the app's handlers.

    FastAPI answers a parameter it cannot parse with 422 through the app-wide
    RequestValidationError handler; catching it here, per route, keeps that handler (and the
    webhook route's answers) untouched for the rest of the app.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _answer(_from_validation(exc))
            except StatusError as exc:
                return _answer(exc)
            except StoreUnavailable as exc:
                cause = type(exc.__cause__).__name__ if exc.__cause__ else "unknown"
                LOG.warning("Status API: the delivery store is unavailable (%s)", cause)
                detail = "The delivery store is unavailable"
                return _answer(StatusError(503, "store_unavailable", detail))

        return route


def _no_nul(name: str, value: str | None) -> None:
    if value is not None and "\x00" in value:
        raise _invalid(name, f"{name} must not contain NUL characters")


def _utc_time(name: str, value: datetime | None) -> datetime | None:
    """``value`` in UTC; 400 without an offset (ambiguous) or when UTC cannot hold it."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise _invalid(name, f"{name} needs a UTC offset, e.g. 2024-01-01T00:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise _invalid(name, f"{name} is out of range once converted to UTC") from None


def _check_cursor(cursor: str | None) -> None:
    """A cursor the store made (decode_cursor checks its range and id)."""
    if not cursor:
        return
    try:
        decode_cursor(cursor)
    except ValueError:
        raise _invalid("cursor", "Invalid cursor") from None


def _serialize(record: DeliveryRecord) -> dict[str, Any]:
    encoded: dict[str, Any] = jsonable_encoder(record.view(datetime.now(UTC)))
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
            raise StatusError(
                401,
                "unauthorized",
                "A valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    router = APIRouter(
        dependencies=[Depends(authorized)],
        tags=["ghapp-celery status"],
        route_class=StatusRoute,
        responses=_ERROR_RESPONSES,
    )

    @router.get("/deliveries")
    async def list_deliveries(
        event: str | None = None,
        state: str | None = None,
        installation_id: int | None = Query(default=None, ge=INT64_MIN, le=INT64_MAX),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = Query(default=50, ge=1, le=MAX_LIMIT),
        cursor: str | None = None,
    ) -> JSONResponse:
        # Checked here rather than left to the database: SQLite and PostgreSQL fail on
        # different values (an int beyond 64 bits, a NUL byte) and in different ways.
        _no_nul("event", event)
        if state is not None and state not in _STATES:
            raise _invalid("state", f"state must be one of {sorted(_STATES)}")
        # A time without an offset is ambiguous: refuse it rather than guess a zone.
        since_utc, until_utc = _utc_time("since", since), _utc_time("until", until)
        # Checked before the store is reached: a bad cursor is a 400 even while it is down
        # (the store's own decode_cursor, so nothing it would refuse gets through).
        _check_cursor(cursor)
        page = await anyio.to_thread.run_sync(
            lambda: store().list_deliveries(
                event=event,
                state=state,
                installation_id=installation_id,
                since=since_utc,
                until=until_utc,
                limit=limit,
                cursor=cursor,
            )
        )
        return JSONResponse(
            {
                "deliveries": [_serialize(item) for item in page.items],
                "next_cursor": page.next_cursor,
            },
        )

    @router.get("/deliveries/{delivery_id}")
    async def show_delivery(delivery_id: str, payload: bool = False) -> JSONResponse:
        _no_nul("delivery_id", delivery_id)
        record = await anyio.to_thread.run_sync(
            lambda: store().get_delivery(delivery_id, with_payload=payload)
        )
        if record is None:
            raise StatusError(404, "not_found", "No such delivery")
        return JSONResponse(_serialize(record))

    @router.get("/runs")
    async def run_counts() -> dict[str, Any]:
        return {"runs": await anyio.to_thread.run_sync(lambda: store().counts())}

    if replay is not None:
        replay_runs = replay

        @router.post("/deliveries/{delivery_id}/replay", status_code=202)
        async def replay_delivery(delivery_id: str) -> dict[str, Any]:
            _no_nul("delivery_id", delivery_id)
            if (
                await anyio.to_thread.run_sync(
                    lambda: store().get_delivery(delivery_id, with_payload=False)
                )
                is None
            ):
                raise StatusError(404, "not_found", "No such delivery")
            runs = await anyio.to_thread.run_sync(replay_runs, delivery_id)
            return {"delivery": delivery_id, "replayed": [r.id for r in runs]}

    return router
