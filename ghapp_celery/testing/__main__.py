"""Serve a FakeGitHub in its own process, on a port you choose, for processes started apart.

    python -m ghapp_celery.testing --port 8765 --key-file app.pem

Prints one JSON line (``url``, ``app_id``, ``installation_ids``, ``key_file``) once it is
serving, then serves until interrupted (Ctrl-C, SIGTERM) or, with ``--until-stdin-closes``,
until its standard input closes (the parent process ended). Point a worker and a web process at
it with ``GITHUBAPP_URL=<url>``, ``GITHUBAPP_ID=<app_id>`` and
``GITHUBAPP_PRIVATE_KEY_PATH=<key_file>``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from ghapp_celery.testing._github import FakeGitHub


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ghapp_celery.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 takes a free port")
    parser.add_argument(
        "--key-file",
        type=Path,
        help="the app's private key (PEM): read when it exists, else written there",
    )
    parser.add_argument("--app-id", type=int, default=12345)
    parser.add_argument("--installations", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--prefix", default="", help='"/api/v3" for GitHub Enterprise Server')
    parser.add_argument("--until-stdin-closes", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    key_file: Path = args.key_file or Path(tempfile.mkdtemp(prefix="fake-github-")) / "app.pem"
    private_key = key_file.read_text() if key_file.exists() else None
    fake = FakeGitHub(
        app_id=args.app_id,
        private_key_pem=private_key,
        installations=args.installations,
        latency=args.latency,
    )
    if private_key is None:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(fake.private_key_pem)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with fake.serve(args.prefix, host=args.host, port=args.port) as url:
        info = {
            "url": url,
            "app_id": fake.app_id,
            "installation_ids": fake.installation_ids,
            "key_file": str(key_file.resolve()),
        }
        print(json.dumps(info), flush=True)
        if args.until_stdin_closes:

            def watch_stdin() -> None:
                sys.stdin.read()
                stop.set()

            threading.Thread(target=watch_stdin, daemon=True).start()
        while not stop.wait(0.5):  # a timed wait, so a signal is seen promptly
            pass


if __name__ == "__main__":
    main()
