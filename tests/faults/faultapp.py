"""The app every process of the fault suite runs: web (uvicorn), workers and beat.

One background handler on ``issues``: it journals ``start <run id> <pid>/<thread> <time>``,
sleeps ``GHAPP_TEST_HANDLER_SECONDS`` and journals ``end ...``, one O_APPEND ``write`` per
line (the format of tests/journalapp.py), so the suite can tell from the outside how often a
run executed and whether two executions of it ever overlapped. The environment (set by the
harness) configures everything; logging goes to stderr, which the harness captures per
process, with ghapp_celery at INFO so the log checks see every record it writes.

Web: ``python -m uvicorn tests.faults.faultapp:web``; workers and beat:
``celery -A tests.faults.faultapp:celery``.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from ghapp_celery import Event, GitHubApp

HANDLER_SECONDS = float(os.environ.get("GHAPP_TEST_HANDLER_SECONDS", "1.0"))
LOG_FORMAT = "%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s"


def journal_path() -> Path:
    return Path(os.environ.get("GHAPP_TEST_STATE_DIR", ".ghapp/test-state")) / "journal"


def _journal(kind: str, run_id: str | None) -> None:
    executor = f"{os.getpid()}/{threading.get_ident()}"
    line = f"{kind} {run_id} {executor} {time.time():.6f}\n".encode()
    fd = os.open(journal_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def journaled(event: Event) -> None:
    _journal("start", event.run_id)
    time.sleep(HANDLER_SECONDS)
    _journal("end", event.run_id)


def _configure_logging() -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_ghapp_faults", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._ghapp_faults = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    logging.getLogger("ghapp_celery").setLevel(logging.INFO)


_configure_logging()
# `kill -USR2 <pid>`: every thread's stack on stderr (the process's log), to see what waits.
faulthandler.register(signal.SIGUSR2, all_threads=True)
journal_path().parent.mkdir(parents=True, exist_ok=True)

if os.environ.get("GHAPP_TEST_WORKER_READY_FILE"):
    from tests._workers import install_ready_marker

    install_ready_marker()

web = FastAPI()
github_app = GitHubApp(web)
github_app.on("issues", background=True)(journaled)
celery = github_app.celery


@web.get("/faults/ready", include_in_schema=False)
def ready() -> PlainTextResponse:
    """The harness polls this until the web process serves."""
    return PlainTextResponse("ok")
