"""The same job with nothing of ours: FastAPI and Celery as one would wire them by hand.

``benchmarks/background.py`` runs it beside ``bgbench_app.py`` as the floor of the stack on
this host: a route that checks the signature, parses the body and calls ``.delay()``, and a
Celery task that parses the payload and returns. No store, no delivery ids, no retries policy,
no GitHub client; the same Celery settings as the repository's ``celeryconfig.py`` (acks late,
prefetch 1, no results) and stock kombu transports. It is the naive baseline a user would
write (``.delay()`` blocks the route's event loop for its publish), not a bound: what these
libraries do on this host with nothing recorded.

Workers run ``celery -A bgbench_bare_app:celery worker -Q github.issues``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from celery import Celery
from fastapi import FastAPI, Request, Response

SECRET = os.environ["GITHUBAPP_WEBHOOK_SECRET"].encode()
QUEUE = "github.issues"

celery = Celery("bgbench_bare", broker=os.environ["CELERY_BROKER_URL"])
celery.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
)


@celery.task(name="bare.issues_opened")
def issues_opened(payload_json: str) -> None:
    payload = json.loads(payload_json)
    if FETCH:  # BGBENCH_HANDLER=fetch: the same GitHub call as bgbench_app's handler
        asyncio.run_coroutine_threadsafe(fetch(payload), event_loop()).result()


# The I/O variant, as DESIGN section 4 wires it by hand: one event loop per worker process in a
# thread, one httpx.AsyncClient with its default limits, a token minted with PyJWT and kept.
FETCH = os.environ.get("BGBENCH_HANDLER") == "fetch"
_state: dict[str, Any] = {}
_lock = threading.Lock()


def event_loop() -> asyncio.AbstractEventLoop:
    with _lock:
        if "loop" not in _state:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, daemon=True).start()
            _state["loop"] = loop
        return _state["loop"]  # type: ignore[no-any-return]


async def fetch(payload: dict[str, Any]) -> None:
    if "client" not in _state:
        _state["client"] = httpx.AsyncClient(base_url=os.environ["GITHUBAPP_URL"])
    client: httpx.AsyncClient = _state["client"]
    installation = payload["installation"]["id"]
    if "token" not in _state:  # no await between the check and the set: one mint per process
        _state["token"] = asyncio.ensure_future(mint_token(client, installation))
    try:
        token = await _state["token"]
    except Exception:
        _state.pop("token", None)  # a failed mint is not kept: the next task tries again
        raise
    response = await client.get(
        "/installation/repositories", headers={"Authorization": f"token {token}"}
    )
    response.raise_for_status()


async def mint_token(client: httpx.AsyncClient, installation: int) -> str:
    now = int(time.time())
    key = Path(os.environ["GITHUBAPP_PRIVATE_KEY_PATH"]).read_text()
    app_jwt = jwt.encode(
        {"iat": now - 60, "exp": now + 540, "iss": os.environ["GITHUBAPP_ID"]}, key, "RS256"
    )
    response = await client.post(
        f"/app/installations/{installation}/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt}"},
    )
    response.raise_for_status()
    return str(response.json()["token"])


web = FastAPI()


@web.post("/webhooks/github/")
async def receive(request: Request) -> Response:
    body = await request.body()
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(request.headers.get("x-hub-signature-256", ""), expected):
        return Response(status_code=401)
    json.loads(body)
    issues_opened.delay(body.decode())
    return Response(b'"QUEUED"', status_code=202, media_type="application/json")


if os.environ.get("GHAPP_TEST_WORKER_READY_FILE"):
    # The worker announces readiness through a file (tests/_workers.py's CeleryWorker).
    from tests._workers import install_ready_marker

    install_ready_marker()
