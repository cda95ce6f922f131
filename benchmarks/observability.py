"""What observability costs: the intake and a no-op worker, off, with metrics, with tracing.

Five servers of the same user code as benchmarks/intake.py (a no-op inline ``def`` handler on
``issues.opened``, the real payload, signed, a fresh delivery id each), all up at once and
measured in alternating rounds:

* ``before``: the package as it was before observability existed (commit ``BEFORE``, its
  ``ghapp_celery`` taken from ``git archive`` and put first on PYTHONPATH): what "off must
  cost nothing" is measured against;
* ``off``: this checkout with nothing configured;
* ``metrics``: ``GITHUBAPP_METRICS_ENABLED=true``;
* ``metrics+tracing``: and OpenTelemetry through the standard variables, every trace
  sampled (``parentbased_traceidratio`` 1.0), exported over OTLP/HTTP to a sink process that
  answers 200; and ``metrics+tracing 10%``, one trace in ten sampled.

Then the background path end to end (benchmarks/background.py's machinery: uvicorn, a Redis
of our own, a ``celery worker -P threads -c 8``, a no-op background handler) in the three
modes of this checkout. Requests per second move with whatever else the machine runs; the
server's CPU time per delivery moves less, so both are reported: medians of rounds, and the
ratio of each mode to ``off`` (to ``before`` for ``off``) from back-to-back pairs.

    .venv/bin/python benchmarks/observability.py            # full run, writes the doc
    .venv/bin/python benchmarks/observability.py --quick    # smoke run, prints only
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from background import Pool, Throughput, free_port, throughput
from intake import OURS, Server, delivery, running
from intake_record import cpu_seconds
from intake_report import machine
from loadgen import run_load

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
CACHE = ROOT / "benchmarks" / ".cache"
#: The last commit before ghapp_celery/observability existed.
BEFORE = "f176f41"
HEADING = "## Observability"
START, END = "<!-- observability:start -->", "<!-- observability:end -->"

SINK = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
        with open(sys.argv[2], "a") as f:
            f.write("x")

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


def metrics_env() -> dict[str, str]:
    return {"GITHUBAPP_METRICS_ENABLED": "true"}


def tracing_env(sink: str, ratio: float = 1.0) -> dict[str, str]:
    return {
        **metrics_env(),
        "OTEL_SERVICE_NAME": "ghapp-bench",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(ratio),
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }


@contextlib.contextmanager
def otlp_sink(workdir: Path) -> Iterator[tuple[str, Path]]:
    """An OTLP/HTTP endpoint that accepts every export (one mark per request in a file)."""
    port = free_port()
    marks = workdir / "otlp-exports"
    marks.write_text("")
    proc = subprocess.Popen([sys.executable, "-c", SINK, str(port), str(marks)])
    try:
        time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", marks
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def before_tree() -> Path:
    """The ``BEFORE`` commit's package, once, under benchmarks/.cache (git-ignored)."""
    target = CACHE / f"ghapp_celery-{BEFORE}"
    if not (target / "ghapp_celery" / "__init__.py").exists():
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BEFORE, "ghapp_celery"],
            check=True,
            capture_output=True,
        ).stdout
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    found = subprocess.run(
        [
            str(OURS.python),
            "-c",
            "import ghapp_celery, sys; sys.stdout.write(ghapp_celery.__file__)",
        ],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        cwd=target.parent,  # not the checkout: sys.path[0] is the working directory
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert found.startswith(str(target)), f"PYTHONPATH did not win over the install: {found}"
    return target


def ratio(pairs: list[tuple[float, float]]) -> str:
    values = [a / b for a, b in pairs]
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def intake_rounds(
    servers: list[tuple[Server, str, int]], rounds: int, requests: int, concurrency: int
) -> dict[str, list[tuple[float, float]]]:
    """Per server, (req/s, server CPU ms per delivery) of each round."""
    body, headers = delivery()

    def fresh() -> dict[str, str]:
        return headers | {"X-GitHub-Delivery": str(uuid.uuid4())}

    for _server, url, _pid in servers:  # imports, the store's migration, first spans
        run_load(url, body, fresh, concurrency=concurrency, requests=500, warmup=0)
    time.sleep(1)
    results: dict[str, list[tuple[float, float]]] = {s.name: [] for s, _, _ in servers}
    for n in range(rounds):
        order = servers if n % 2 == 0 else servers[::-1]
        for server, url, pid in order:
            before = cpu_seconds(pid)
            result = run_load(
                url, body, fresh, concurrency=concurrency, requests=requests, warmup=0
            )
            time.sleep(0.3)  # the handled-delivery writer and the span exporter catch up
            cpu_ms = (cpu_seconds(pid) - before) / requests * 1000
            results[server.name].append((result.rps, cpu_ms))
            print(
                f"round {n + 1} {server.name:<16} {result.rps:7.1f} req/s"
                f"  server CPU {cpu_ms:.3f} ms/delivery",
                flush=True,
            )
    return results


#: Each mode's row compares with this one ("before" is the reference of all).
REFERENCE = {
    "before": None,
    "off": "before",
    "metrics": "off",
    "metrics+tracing": "off",
    "metrics+tracing 10%": "off",
}
DRIVER = ROOT / "benchmarks" / "obs_asgi_driver.py"


def in_process_rounds(
    servers: list[Server], workdir: Path, rounds: int, requests: int
) -> dict[str, list[float]]:
    """Per mode, the app's microseconds per delivery driven in process (obs_asgi_driver.py),
    one fresh process per mode and round, in alternating order."""
    found: dict[str, list[float]] = {s.name: [] for s in servers}
    for n in range(rounds):
        for server in servers if n % 2 == 0 else servers[::-1]:
            env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUBAPP_")}
            env |= {"GITHUBAPP_DATA_DIR": str(workdir / f"driver-{server.name}-{n}")}
            env |= dict(server.env)
            out = subprocess.run(
                [str(server.python), str(DRIVER), str(requests), "1"],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            found[server.name].append(float(out.split()[-1]))
            print(f"in process, round {n + 1} {server.name:<16} {found[server.name][-1]:7.1f} us")
    return found


def in_process_table(results: dict[str, list[float]]) -> str:
    rows = ["| in process (no server) | µs per delivery | vs reference |", "|---|---:|---:|"]
    reference = REFERENCE
    for name, values in results.items():
        ref = reference[name]
        vs = (
            "reference"
            if ref is None
            else f"{ratio(list(zip(values, results[ref], strict=True)))} of {ref}"
        )
        rows.append(f"| {name} | {statistics.median(values):,.0f} | {vs} |")
    return "\n".join(rows)


def intake_table(results: dict[str, list[tuple[float, float]]]) -> str:
    rows = ["| intake | req/s | server CPU ms/delivery | req/s vs reference | CPU vs reference |"]
    rows.append("|---|---:|---:|---:|---:|")
    reference = REFERENCE
    for name, values in results.items():
        ref = reference[name]
        if ref is None:
            vs_rps = vs_cpu = "reference"
        else:
            base = results[ref]
            vs_rps = f"{ratio([(a[0], b[0]) for a, b in zip(values, base, strict=True)])} of {ref}"
            vs_cpu = f"{ratio([(a[1], b[1]) for a, b in zip(values, base, strict=True)])} of {ref}"
        rows.append(
            f"| {name} | {statistics.median(v[0] for v in values):,.0f} "
            f"| {statistics.median(v[1] for v in values):.3f} | {vs_rps} | {vs_cpu} |"
        )
    return "\n".join(rows)


def worker_table(runs: dict[str, list[Throughput]]) -> str:
    rows = [
        "| background (no-op handler) | deliveries/s end to end | web CPU ms/delivery "
        "| worker CPU ms/run | e2e vs off | worker CPU vs off |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    off = runs["off"]
    for name, values in runs.items():
        e2e = statistics.median(t.e2e_rate for t in values)
        web = statistics.median(t.cpu_ms["web"] for t in values)
        work = statistics.median(t.cpu_ms["workers"] for t in values)
        if name == "off":
            vs_e2e = vs_cpu = "reference"
        else:
            vs_e2e = ratio([(t.e2e_rate, o.e2e_rate) for t, o in zip(values, off, strict=True)])
            vs_cpu = ratio(
                [
                    (t.cpu_ms["workers"], o.cpu_ms["workers"])
                    for t, o in zip(values, off, strict=True)
                ]
            )
        rows.append(f"| {name} | {e2e:,.0f} | {web:.3f} | {work:.3f} | {vs_e2e} | {vs_cpu} |")
    return "\n".join(rows)


def write_section(text: str) -> None:
    current = DOC.read_text()
    block = f"{HEADING}\n{START}\n\n{text.strip()}\n\n{END}\n"
    if START in current:
        head, rest = current.split(f"{HEADING}\n{START}", 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        DOC.write_text(head + block + ("\n" + tail if tail else ""))
    else:
        DOC.write_text(current.rstrip() + "\n\n" + block)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run; writes nothing")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--skip-worker", action="store_true")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    requests = 500 if args.quick else 3000
    concurrency = 10
    started = time.monotonic()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-observability-") as tmp_name:
        tmp = Path(tmp_name)
        # The servers inherit the working directory, which `python -m uvicorn` puts first on
        # sys.path: from the checkout, `before` would import this checkout's ghapp_celery.
        os.chdir(tmp)
        with otlp_sink(tmp) as (sink, marks):
            servers = [
                Server(
                    "before", OURS.python, OURS.import_line, (("PYTHONPATH", str(before_tree())),)
                ),
                Server("off", OURS.python, OURS.import_line),
                Server("metrics", OURS.python, OURS.import_line, tuple(metrics_env().items())),
                Server(
                    "metrics+tracing",
                    OURS.python,
                    OURS.import_line,
                    tuple(tracing_env(sink).items()),
                ),
                Server(
                    "metrics+tracing 10%",
                    OURS.python,
                    OURS.import_line,
                    tuple(tracing_env(sink, 0.1).items()),
                ),
            ]
            pids: list[int] = []
            with contextlib.ExitStack() as stack:
                urls = [stack.enter_context(running(s, tmp, 0.0, pids)) for s in servers]
                measured = list(zip(servers, urls, pids, strict=True))
                intake = intake_rounds(measured, rounds, requests, concurrency)
            in_process = in_process_rounds(
                servers, tmp, 3 if args.quick else 9, 1000 if args.quick else 3000
            )
            exports_intake = len(marks.read_text())
            assert exports_intake > 0, "the tracing server exported no spans: tracing was off"
            worker_runs: dict[str, list[Throughput]] = {
                "off": [],
                "metrics": [],
                "metrics+tracing": [],
            }
            if not args.skip_worker:
                envs = {"off": {}, "metrics": metrics_env(), "metrics+tracing": tracing_env(sink)}
                deliveries = 600 if args.quick else 4000
                for n in range(1 if args.quick else 3):
                    names = list(envs) if n % 2 == 0 else list(envs)[::-1]
                    for name in names:
                        t = Throughput(
                            f"obs-{name.replace('+', '-')}-r{n + 1}",
                            "redis",
                            Pool("threads", 8),
                            "noop",
                            deliveries,
                            100,
                            env=envs[name],
                        )
                        worker_runs[name].append(throughput(t, tmp, 100 if args.quick else 300))
    elapsed = time.monotonic() - started
    text = intake_table(intake) + "\n\n" + in_process_table(in_process)
    if worker_runs["off"]:
        text += "\n\n" + worker_table(worker_runs)
    print("\n" + text + f"\n\n({elapsed:.0f} s; {exports_intake} OTLP exports from the intake)")
    if args.quick or args.no_write:
        return 0
    method = METHOD.format(
        date=datetime.now(UTC).date().isoformat(),
        machine=machine(),
        rounds=rounds,
        requests=requests,
        concurrency=concurrency,
        before=BEFORE,
    )
    write_section(method + "\n\n" + text)
    print(f"Wrote {DOC.relative_to(ROOT)}")
    return 0


METHOD = """\
`benchmarks/observability.py`, {date}, {machine}. The intake: five uvicorn processes of the
same app (an inline no-op handler, the real `issues.opened` payload, signed, a fresh delivery
id each), all up at once, {rounds} alternating rounds of {requests} requests at {concurrency}
in flight: `before` is the package at commit `{before}`, before observability existed; `off`
is this version with nothing configured; `metrics` sets `GITHUBAPP_METRICS_ENABLED`;
`metrics+tracing` adds OpenTelemetry through the standard variables, every trace sampled
(`parentbased_traceidratio` 1.0) and exported over OTLP/HTTP to a local sink, and
`metrics+tracing 10%` samples one trace in ten. The background path: uvicorn, Redis and a
`celery worker -P threads -c 8` with a no-op background handler, the three modes of this
version in alternating rounds. "In process" drives the same app straight through ASGI in
one fresh process per mode and round (`benchmarks/obs_asgi_driver.py`, no server, no
socket): the app's own cost, which the shared machine disturbs much less. Ratios are medians
of back-to-back pairs (range in brackets)."""


if __name__ == "__main__":
    raise SystemExit(main())
