"""How FakeGitHub answers: GitHub's error bodies, its pagination, and the JSON shapes every
endpoint group shares. Pure functions of a request and some data; no state."""

from __future__ import annotations

import json
import math
import uuid
from http import HTTPStatus
from typing import Any

from starlette.requests import Request

from ghapp_celery.testing._types import Reply

__all__ = [
    "DOCS",
    "RATE_DOCS",
    "SECONDARY_MESSAGE",
    "account_json",
    "error_reply",
    "int_param",
    "paginate_reply",
    "public",
    "read_json_object",
    "request_id",
    "validation_reply",
]

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {request_id}."
)
ERROR_MESSAGES = {401: "Bad credentials", 422: "Validation Failed", 500: "Server Error"}


def error_reply(status: int, message: str | None = None, docs: str = DOCS) -> Reply:
    """GitHub's error body: ``{"message": ..., "documentation_url": ...}``."""
    text = message or ERROR_MESSAGES.get(status) or HTTPStatus(status).phrase
    return Reply(status, {"message": text, "documentation_url": docs})


def validation_reply(resource: str, code: str, field_name: str) -> Reply:
    """GitHub's 422 for a request body it rejects, with ``errors`` in its format."""
    reply = error_reply(422, "Validation Failed")
    reply.body["errors"] = [{"resource": resource, "code": code, "field": field_name}]
    return reply


def int_param(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


def request_id() -> str:
    """An ``x-github-request-id``."""
    return uuid.uuid4().hex[:20].upper()


def paginate_reply(request: Request, items: list[Any], wrap: str | None = None) -> Reply:
    """One page of ``items`` with GitHub's Link header; ``wrap`` puts them under a key.

    ``per_page`` defaults to 30 and stops at 100; the links are ``next``/``last`` and
    ``first``/``prev``, as GitHub sends them."""
    per_page = min(100, max(1, int_param(request, "per_page", 30)))
    page = max(1, int_param(request, "page", 1))
    chunk = items[(page - 1) * per_page : page * per_page]
    body: Any = chunk if wrap is None else {"total_count": len(items), wrap: chunk}
    reply = Reply(200, body)
    last = max(1, math.ceil(len(items) / per_page))
    links: list[tuple[int, str]] = []
    if page < last:
        links += [(page + 1, "next"), (last, "last")]
    if page > 1:
        links += [(1, "first"), (page - 1, "prev")]
    if links:
        reply.headers["link"] = ", ".join(
            f'<{request.url.include_query_params(per_page=per_page, page=p)}>; rel="{rel}"'
            for p, rel in links
        )
    return reply


async def read_json_object(request: Request) -> dict[str, Any] | Reply:
    """The request's JSON object (an empty body is ``{}``), or GitHub's 400 for anything else."""
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return error_reply(400, "Problems parsing JSON")
    if not isinstance(data, dict):
        return error_reply(400, "Body should be a JSON object")
    return data


def public(body: Any) -> Any:
    """The body without the fake's bookkeeping keys (those starting with ``_``)."""
    if isinstance(body, dict):
        return {k: public(v) for k, v in body.items() if not str(k).startswith("_")}
    if isinstance(body, list):
        return [public(v) for v in body]
    return body


def account_json(login: str, account_id: int, kind: str) -> dict[str, Any]:
    """A ``simple-user`` object (an installation's account, an app's owner)."""
    return {
        "login": login,
        "id": account_id,
        "node_id": f"O_fake{account_id}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{account_id}?v=4",
        "url": f"https://api.github.com/users/{login}",
        "html_url": f"https://github.com/{login}",
        "type": kind,
        "site_admin": False,
    }
