"""`make run`: the quickstart web app and one Celery worker (with the sweeper's beat) together."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the quickstart app with a worker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter on first run

    from examples.quickstart.app import app, github_app

    data_dir = Path(github_app.settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    github_app.store.upgrade()
    worker = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "examples.quickstart.app:celery",
            "worker",
            "-B",
            "-s",
            str(data_dir / "celerybeat-schedule"),
            "-P",
            "threads",
            "-c",
            str(args.concurrency),
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=os.environ.copy(),
    )
    url = f"http://{args.host}:{args.port}{github_app.settings.webhook_path}"
    print(
        f"\nServing the quickstart app on {url} with a Celery worker (pid {worker.pid}).\n"
        f"Broker and store: {data_dir.resolve()} (SQLite). From another terminal:\n"
        f"    .venv/bin/ghapp-celery receive issues.opened --wait --url {url}\n",
        flush=True,
    )
    import uvicorn

    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()


if __name__ == "__main__":
    main()
