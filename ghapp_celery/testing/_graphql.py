"""FakeGitHub's GraphQL endpoint and its answers: not a GraphQL engine, a resolver for the few
query shapes the tests and benchmarks send, answering in GitHub's format (errors in a 200 body,
like GitHub).

Replace ``fake.graphql_resolver`` with any ``(query, variables, fake) -> dict`` for others.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from starlette.requests import Request

from ghapp_celery.testing._replies import error_reply
from ghapp_celery.testing._state import FakeState
from ghapp_celery.testing._types import Credential, Endpoint, Reply

__all__ = ["GraphQLEndpoint", "default_resolver"]

GRAPHQL_DOCS = "https://docs.github.com/graphql"


def _cursor(index: int) -> str:
    return base64.b64encode(f"cursor:v2:{index}".encode()).decode()


def _index(cursor: Any) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(str(cursor)).decode().rsplit(":", 1)[1])
    except (ValueError, IndexError):
        return -1


def _argument(query: str, variables: dict[str, Any], name: str) -> Any:
    """The value of ``name: "literal"`` / ``name: 12`` / ``name: $var`` in the query."""
    match = re.search(rf"\b{name}\s*:\s*(\"[^\"]*\"|\d+|\$\w+)", query)
    if match is None:
        return None
    raw = match.group(1)
    if raw.startswith("$"):
        return variables.get(raw[1:])
    return raw.strip('"') if raw.startswith('"') else int(raw)


def _parse_error(query: str) -> dict[str, Any] | None:
    depth = 0
    for line_no, line in enumerate(query.splitlines() or [""], 1):
        for col, char in enumerate(line, 1):
            depth += {"{": 1, "}": -1}.get(char, 0)
            if depth < 0:
                message = f'Parse error on "}}" (RCURLY) at [{line_no}, {col}]'
                return {
                    "errors": [
                        {"message": message, "locations": [{"line": line_no, "column": col}]}
                    ]
                }
    if depth != 0 or "{" not in query:
        return {"errors": [{"message": "Parse error on end of file", "locations": []}]}
    return None


def default_resolver(query: str, variables: dict[str, Any], fake: FakeState) -> dict[str, Any]:
    """``viewer { login }`` and ``repository(owner:, name:) { issues(first:, after:) {...} }``."""
    problem = _parse_error(query)
    if problem is not None:
        return problem
    data: dict[str, Any] = {}
    if re.search(r"\bviewer\b", query):
        data["viewer"] = {"login": f"{fake.slug}[bot]"}
    if re.search(r"\brepository\s*\(", query):
        owner, name = _argument(query, variables, "owner"), _argument(query, variables, "name")
        repo = fake.repos.get(f"{owner}/{name}")
        if repo is None:
            return {
                "data": {"repository": None},
                "errors": [
                    {
                        "type": "NOT_FOUND",
                        "path": ["repository"],
                        "locations": [{"line": 1, "column": 1}],
                        "message": f"Could not resolve to a Repository with the name "
                        f"'{owner}/{name}'.",
                    }
                ],
            }
        first = _argument(query, variables, "first") or 30
        if not isinstance(first, int) or not 1 <= first <= 100:
            return {
                "errors": [{"message": "first must be between 1 and 100", "type": "ARGUMENT_LIMIT"}]
            }
        start = _index(_argument(query, variables, "after"))
        if start < 0:
            return {
                "errors": [
                    {"message": "`after` is not a valid cursor", "type": "INVALID_CURSOR_ARGUMENTS"}
                ]
            }
        chunk = repo.issues[start : start + first]
        end = start + len(chunk)
        data["repository"] = {
            "nameWithOwner": repo.full_name,
            "issues": {
                "totalCount": len(repo.issues),
                "nodes": [{"number": i["number"], "title": i["title"]} for i in chunk],
                "pageInfo": {
                    "hasNextPage": end < len(repo.issues),
                    "endCursor": _cursor(end) if chunk else None,
                },
            },
        }
    if not data:
        field = re.search(r"\{\s*(\w+)", query)
        name = field.group(1) if field else "?"
        return {
            "errors": [
                {
                    "message": f"Field '{name}' doesn't exist on type 'Query'",
                    "locations": [{"line": 1, "column": 1}],
                }
            ]
        }
    return {"data": data}


class GraphQLEndpoint:
    """``POST /graphql``: the query goes to ``fake.graphql_resolver``."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("/graphql", self.graphql, ("POST",))]

    async def graphql(self, request: Request, credential: Credential) -> Reply:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return error_reply(400, "Problems parsing JSON", GRAPHQL_DOCS)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return error_reply(400, "Problems parsing JSON", GRAPHQL_DOCS)
        variables = body.get("variables") or {}
        answer = self.state.graphql_resolver(body["query"], variables, self.state)
        return Reply(200, answer)
