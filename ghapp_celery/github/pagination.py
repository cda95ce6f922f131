"""Pagination rules, free of I/O: where a page's items are, and where a GraphQL cursor is.

REST: follow the ``Link: <…>; rel="next"`` URL GitHub gives (never build page URLs). A page is
a JSON list, or an object holding the list: ``items`` for search, ``repositories`` for
``/installation/repositories``, ``check_runs``, ``workflow_runs``, ``installations``, …

GraphQL: a connection exposes ``pageInfo { hasNextPage endCursor }`` and ``nodes`` (or
``edges { node }``); the next page is the same query with the ``$cursor`` variable set to
``endCursor``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "connection_at",
    "connection_nodes",
    "next_cursor",
    "page_items",
    "parse_link",
    "with_per_page",
]

_LINK_SPLIT = re.compile(r",\s*(?=<)")


def parse_link(value: str | None) -> dict[str, str]:
    """``rel`` → URL from a ``Link`` header (``<url>; rel="next", <url>; rel="last"``)."""
    found: dict[str, str] = {}
    for part in _LINK_SPLIT.split(value or ""):
        target, *params = part.split(";")
        url = target.strip().strip("<>").strip()
        for param in params:
            name, _, rels = param.strip().partition("=")
            if name.strip().lower() == "rel" and url:
                for rel in rels.strip().strip('"').split():
                    found[rel] = url
    return found


def with_per_page(params: Mapping[str, Any] | None, per_page: int | None) -> dict[str, Any]:
    """The query parameters with ``per_page`` set (unless the caller set one)."""
    out = dict(params or {})
    if per_page is not None and "per_page" not in out:
        out["per_page"] = per_page
    return out


def page_items(data: Any, items_key: str | None = None) -> list[Any]:
    """The items of one page: the list itself, ``data[items_key]``, ``data["items"]``, or the
    one list-valued field of an object. Raises ValueError when the page holds no clear list."""
    if isinstance(data, list):
        return data
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ValueError("a paginated answer must be a JSON list or object")
    if items_key is not None:
        found = data.get(items_key)
        if not isinstance(found, list):
            raise ValueError(f"the answer has no list under {items_key!r}")
        return found
    if isinstance(data.get("items"), list):
        return list(data["items"])
    lists = [value for value in data.values() if isinstance(value, list)]
    if len(lists) != 1:
        raise ValueError("cannot tell which field holds the items; pass items_key=")
    return lists[0]


def connection_at(data: Any, path: str) -> dict[str, Any]:
    """The connection at the dotted ``path`` of GraphQL ``data`` (``"repository.issues"``)."""
    node = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"GraphQL data has no {path!r} (missing {part!r})")
        node = node[part]
    if not isinstance(node, dict) or not isinstance(node.get("pageInfo"), dict):
        raise ValueError(f"{path!r} is not a connection with pageInfo")
    return node


def connection_nodes(connection: Mapping[str, Any]) -> list[Any]:
    if isinstance(connection.get("nodes"), list):
        return list(connection["nodes"])
    edges = connection.get("edges")
    if isinstance(edges, list):
        return [edge.get("node") if isinstance(edge, dict) else edge for edge in edges]
    raise ValueError("a connection must select nodes or edges { node }")


def next_cursor(connection: Mapping[str, Any]) -> str | None:
    info = connection.get("pageInfo") or {}
    if not info.get("hasNextPage"):
        return None
    cursor = info.get("endCursor")
    return str(cursor) if cursor else None
