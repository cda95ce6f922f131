"""What recording the handled deliveries costs the intake (intake/handled.py).

The same user code as benchmarks/intake.py (a no-op ``def`` handler on ``issues.opened``,
the real payload, signed, a fresh delivery id each), served twice by ghapp_celery: with the
default, which records every delivery after its answer, and with
``GITHUBAPP_RECORD_HANDLED_DELIVERIES=false``. Requests per second move with whatever else
the shared machine runs; the server's own CPU time per delivery (utime + stime from /proc,
the writer thread included) moves much less, so both are reported: medians of alternating
rounds, and the ratio of each round's back-to-back pair.

    .venv/bin/python benchmarks/intake_record.py [--rounds 5] [--requests 3000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from intake import OURS, UNRECORDED, Server, delivery, running
from loadgen import run_load

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    body, headers = delivery()

    def fresh() -> dict[str, str]:
        return headers | {"X-GitHub-Delivery": str(uuid.uuid4())}

    results: dict[str, list[tuple[float, float]]] = {OURS.name: [], UNRECORDED.name: []}
    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        pids: list[int] = []
        with (
            running(OURS, Path(tmp), 0.0, pids) as ours_url,
            running(UNRECORDED, Path(tmp), 0.0, pids) as their_url,
        ):
            servers: list[tuple[Server, str, int]] = [
                (OURS, ours_url, pids[0]),
                (UNRECORDED, their_url, pids[1]),
            ]
            for _server, url, _ in servers:  # warm up: imports, the store's migration
                run_load(url, body, fresh, concurrency=args.concurrency, requests=500, warmup=0)
            time.sleep(1)
            for n in range(args.rounds):
                for server, url, pid in servers if n % 2 == 0 else servers[::-1]:
                    before = cpu_seconds(pid)
                    result = run_load(
                        url,
                        body,
                        fresh,
                        concurrency=args.concurrency,
                        requests=args.requests,
                        warmup=0,
                    )
                    time.sleep(0.2)  # the writer's last batch (50 ms gathering) lands
                    cpu_ms = (cpu_seconds(pid) - before) / args.requests * 1000
                    results[server.name].append((result.rps, cpu_ms))
                    print(
                        f"round {n + 1} {server.name:<28} {result.rps:7.1f} req/s"
                        f"  server CPU {cpu_ms:.3f} ms/delivery",
                        flush=True,
                    )
    ours, bare = results[OURS.name], results[UNRECORDED.name]
    rps = [o[0] / b[0] for o, b in zip(ours, bare, strict=True)]
    cpu = [o[1] / b[1] for o, b in zip(ours, bare, strict=True)]
    print(
        f"\nconcurrency {args.concurrency}, {args.rounds} rounds of {args.requests} requests\n"
        "| server | req/s | server CPU ms/delivery |\n|---|---:|---:|\n"
        f"| recorded (default) | {statistics.median(o[0] for o in ours):,.0f} "
        f"| {statistics.median(o[1] for o in ours):.3f} |\n"
        f"| not recorded | {statistics.median(b[0] for b in bare):,.0f} "
        f"| {statistics.median(b[1] for b in bare):.3f} |\n"
        f"| recorded / not | {statistics.median(rps):.2f}x ({min(rps):.2f}-{max(rps):.2f}) "
        f"| {statistics.median(cpu):.2f}x ({min(cpu):.2f}-{max(cpu):.2f}) |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
