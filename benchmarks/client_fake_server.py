"""FakeGitHub in its own process for benchmarks/client.py: every answer waits ``--latency``.

Prints one JSON line (url, app id, installation id, private-key path) and serves until killed.
``GET /_bench/stats`` (no auth) reports token requests, 304s and every installation token's
remaining budget, so the benchmark can count what reached "GitHub".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from starlette.requests import Request

from ghapp_celery.testing import Credential, FakeGitHub, Reply


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--issues", type=int, default=1000)
    args = parser.parse_args()
    # FakeGitHub's clock is real time: tokens and JWTs age as they would against GitHub.
    fake = FakeGitHub(latency=args.latency, rate_limit=10_000_000)
    fake.add_repo("octo/bench", issues=args.issues)
    fake.requests = _Discard()  # a benchmark sends tens of thousands; keep no log

    async def stats(request: Request, credential: Credential) -> Reply:
        return Reply(
            200,
            {
                "token_requests": fake.token_request_count(),
                "not_modified": fake.not_modified,
                "remaining": {t[:8]: fake.remaining(t) for t in list(fake.tokens)},
            },
        )

    fake.add_route("/_bench/stats", stats, auth="none")
    key = Path(tempfile.mkdtemp(prefix="ghapp-bench-")) / "app.pem"
    key.write_text(fake.private_key_pem)
    with fake.serve() as url:
        info = {
            "url": url,
            "app_id": fake.app_id,
            "installation_id": fake.installation_ids[0],
            "key_path": str(key),
        }
        print(json.dumps(info), flush=True)
        sys.stdin.read()  # serve until the benchmark closes our stdin


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
