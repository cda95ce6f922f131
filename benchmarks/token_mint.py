"""Token mints against a plain GET: does minting through the shared session cost anything?

FakeGitHub is served on loopback in this process's server thread (no added latency). Each
sample is one call's wall time; the token cache is off for the mints (the token is forgotten
before each call, so every call is a ``POST /app/installations/{id}/access_tokens``). The GET
is ``GET /repos/{repo}`` through ``AsyncGitHubClient`` / ``GitHubClient`` with the ETag cache
off and a token already cached, so it measures the request path alone.

    .venv/bin/python benchmarks/token_mint.py            # 200 samples of each, 3 rounds
    .venv/bin/python benchmarks/token_mint.py -n 50
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from ghapp_celery.github import AsyncGitHubClient, GitHubAppAuth, GitHubClient
from ghapp_celery.testing import FakeGitHub

REPO = "octo/bench"


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def sync_mints(auth: GitHubAppAuth, iid: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        auth.invalidate(iid)
        start = time.perf_counter()
        auth.get_access_token(iid)
        out.append(time.perf_counter() - start)
    return out


def sync_gets(auth: GitHubAppAuth, iid: int, n: int) -> list[float]:
    out = []
    with GitHubClient(auth, iid, cache=False) as gh:
        gh.get(f"/repos/{REPO}")  # token minted, connection open
        for _ in range(n):
            start = time.perf_counter()
            gh.get(f"/repos/{REPO}")
            out.append(time.perf_counter() - start)
    return out


async def async_mints(auth: GitHubAppAuth, iid: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        auth.invalidate(iid)
        start = time.perf_counter()
        await auth.aget_access_token(iid)
        out.append(time.perf_counter() - start)
    return out


async def async_gets(auth: GitHubAppAuth, iid: int, n: int) -> list[float]:
    out = []
    async with AsyncGitHubClient(auth, iid, cache=False) as gh:
        await gh.get(f"/repos/{REPO}")
        for _ in range(n):
            start = time.perf_counter()
            await gh.get(f"/repos/{REPO}")
            out.append(time.perf_counter() - start)
    return out


async def _async_round(auth: GitHubAppAuth, iid: int, n: int) -> tuple[list[float], list[float]]:
    try:
        return await async_mints(auth, iid, n), await async_gets(auth, iid, n)
    finally:
        await auth.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fake = FakeGitHub()
    fake.add_repo(REPO)
    iid = fake.installation_ids[0]
    names = ("sync mint", "sync GET", "async mint", "async GET")
    rows: dict[str, list[float]] = {name: [] for name in names}
    with fake.serve() as url:
        auth = GitHubAppAuth(fake.app_id, fake.private_key_pem, base_url=url)
        sync_mints(auth, iid, 20)  # warm-up: imports, key load, connections
        for _ in range(args.rounds):
            rows["sync mint"].append(_ms(sync_mints(auth, iid, args.n)))
            rows["sync GET"].append(_ms(sync_gets(auth, iid, args.n)))
            mints, gets = asyncio.run(_async_round(auth, iid, args.n))
            rows["async mint"].append(_ms(mints))
            rows["async GET"].append(_ms(gets))
        auth.close()
    print(f"median of {args.n} calls, per round (ms); best round last column")
    for name, values in rows.items():
        print(f"{name:11} " + " ".join(f"{v:6.3f}" for v in values) + f"   {min(values):6.3f}")
    for kind in ("sync", "async"):
        ratio = min(rows[f"{kind} mint"]) / min(rows[f"{kind} GET"])
        print(f"{kind}: mint / GET = {ratio:.2f}")


if __name__ == "__main__":
    main()
