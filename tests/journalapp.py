"""A GitHub App whose background handler journals each execution, for outage tests.

The handler appends ``start <run id> <pid> <time>`` when it begins and ``end ...`` when it
returns, one ``write`` per line on an O_APPEND file that worker and test both see, so a test
can tell from the outside how often, and whether ever at once, a run executed. The worker
imports ``tests.journalapp:celery``; the test calls ``build()`` after setting the environment.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from pathlib import Path

from fastapi import FastAPI

from ghapp_celery import Event, GitHubApp

HANDLER_SECONDS = float(os.environ.get("GHAPP_TEST_HANDLER_SECONDS", "1.0"))


def journal_path() -> Path:
    path = Path(os.environ.get("GHAPP_TEST_STATE_DIR", ".ghapp/test-state")) / "journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _journal(kind: str, run_id: str | None) -> None:
    executor = f"{os.getpid()}/{threading.get_ident()}"
    line = f"{kind} {run_id} {executor} {time.time():.6f}\n".encode()
    fd = os.open(journal_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def executions(path: Path | None = None) -> dict[str, list[tuple[float, float | None]]]:
    """Each run's executions as (start, end) wall times; end None: it never returned."""
    path = path or journal_path()
    runs: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
    open_by: dict[tuple[str, str], int] = {}
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        kind, run_id, executor, when = line.split()
        if kind == "start":
            open_by[(run_id, executor)] = len(runs[run_id])
            runs[run_id].append((float(when), None))
        else:
            index = open_by.pop((run_id, executor))
            runs[run_id][index] = (runs[run_id][index][0], float(when))
    return dict(runs)


def journaled(event: Event) -> None:
    _journal("start", event.run_id)
    time.sleep(HANDLER_SECONDS)
    _journal("end", event.run_id)


def build() -> GitHubApp:
    web = FastAPI()
    app = GitHubApp(web)
    app.on("issues", background=True)(journaled)
    app.web = web  # type: ignore[attr-defined]
    return app


if os.environ.get("GHAPP_TEST_WORKER_READY_FILE"):
    from tests._workers import install_ready_marker

    install_ready_marker()

github_app = build()
celery = github_app.celery
