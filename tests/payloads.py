"""Load the real webhook payloads in tests/fixtures/webhooks (see the README there).

A tiny helper shared by the tests: read INDEX.tsv, read a payload, and give a payload the
``installation`` object that a GitHub App delivery of that event would carry.
"""

from __future__ import annotations

import base64
import copy
import csv
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "APP_LEVEL_EVENTS",
    "FIXTURES",
    "WEBHOOKS",
    "Row",
    "expects_installation",
    "load_bytes",
    "load_index",
    "load_payload",
    "with_installation",
]

FIXTURES = Path(__file__).parent / "fixtures"
WEBHOOKS = FIXTURES / "webhooks"

# Events about the app itself or global to GitHub: an App receives them without an
# ``installation`` object (GITHUB_FACTS §10). Every other event an App receives belongs to one
# installation, even though many octokit examples are repository-hook captures without it.
APP_LEVEL_EVENTS = frozenset(
    {"ping", "meta", "security_advisory", "github_app_authorization", "installation_target"}
)


@dataclass(frozen=True)
class Row:
    """One line of INDEX.tsv. ``action`` is None where the payload has no top-level action."""

    event: str
    action: str | None
    path: str
    has_installation_key: bool

    @property
    def id(self) -> str:
        """A readable pytest id: ``issues/opened``, ``push/default.with-installation``."""
        return self.path.removesuffix(".json")


@cache
def load_index() -> list[Row]:
    """Every payload listed in INDEX.tsv, in file order."""
    with (WEBHOOKS / "INDEX.tsv").open(newline="", encoding="utf-8") as handle:
        return [
            Row(
                event=line["event"],
                action=None if line["action"] == "default" else line["action"],
                path=line["path"],
                has_installation_key=line["has_installation_key"] == "true",
            )
            for line in csv.DictReader(handle, delimiter="\t")
        ]


def load_bytes(path: str) -> bytes:
    """The file's exact bytes (pretty-printed JSON as stored upstream)."""
    return (WEBHOOKS / path).read_bytes()


def load_payload(path: str) -> dict[str, Any]:
    """A fresh copy of the payload at ``path`` (relative to fixtures/webhooks), safe to mutate."""
    payload = json.loads(load_bytes(path))
    if not isinstance(payload, dict):
        raise ValueError(f"{path} is not a JSON object")
    return payload


def expects_installation(event: str) -> bool:
    """Whether a GitHub App delivery of ``event`` always carries ``installation``."""
    return event not in APP_LEVEL_EVENTS


def _installation_node_id(installation_id: int) -> str:
    # GitHub's legacy global id: base64 of "0<len(type)>:<type><id>", the form the octokit
    # examples carry (e.g. MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ== for installation 1).
    kind = "IntegrationInstallation"
    return base64.b64encode(f"0{len(kind)}:{kind}{installation_id}".encode()).decode()


def with_installation(
    payload: dict[str, Any], *, installation_id: int = 1, event: str | None = None
) -> dict[str, Any]:
    """A copy of ``payload`` with an ``installation`` object added when it lacks one.

    With ``event`` given, app-level events (APP_LEVEL_EVENTS) come back unchanged, as an App
    would receive them. An existing ``installation`` is kept: it is what GitHub sent.
    """
    result = copy.deepcopy(payload)
    if "installation" in result or (event is not None and not expects_installation(event)):
        return result
    result["installation"] = {
        "id": installation_id,
        "node_id": _installation_node_id(installation_id),
    }
    return result
