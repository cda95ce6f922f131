"""Webhook intake: ghapp_celery against fastapi-githubapp 0.2.7, side by side.

Both libraries serve the same user code (only the import line differs) under the same uvicorn
command, each in its own subprocess. The real ``issues/opened`` payload, signed, is posted at
several concurrencies, alternating between the two servers round by round so machine noise
hits both; medians over rounds are reported. fastapi-githubapp lives in its own virtual
environment under benchmarks/.cache, built on first run with the same uvicorn and FastAPI
versions as ours, so the library is the only difference.

    .venv/bin/python benchmarks/intake.py            # full run, writes docs/performance.md
    .venv/bin/python benchmarks/intake.py --quick    # smoke run, prints only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fastapi
import httpx
import uvicorn
from intake_report import Comparison, RunInfo, machine, render_section, table, write_section
from loadgen import run_load

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
THEIR_VENV = CACHE / "fastapi-githubapp-0.2.7"
PAYLOAD = ROOT / "tests" / "fixtures" / "webhooks" / "issues" / "opened.json"
DOC = ROOT / "docs" / "performance.md"
SECRET = "benchmark-secret"
ROUTE = "/webhooks/github/"
SLEEP = 0.2  # seconds the blocking handler sleeps in the second scenario

# The user code, verbatim for both libraries except the first line. A sync ``def`` handler,
# as fastapi-githubapp users write them; BENCH_HANDLER_SLEEP makes it block.
USER_CODE = """\
{import_line}
import os
import time

from fastapi import FastAPI

app = FastAPI()
github_app = GitHubApp(
    app,
    github_app_id=1,
    github_app_key=b"unused: no GitHub call is made",
    github_app_secret=os.environ["BENCH_SECRET"],
)
SLEEP = float(os.environ.get("BENCH_HANDLER_SLEEP", "0"))


@github_app.on("issues.opened")
def on_issue_opened():
    if SLEEP:
        time.sleep(SLEEP)
"""

# Same flags for both. ghapp_celery's environment has neither uvloop nor httptools, so both
# run uvicorn's pure-Python stack rather than letting whichever has them installed win.
UVICORN_FLAGS = [
    "--host", "127.0.0.1", "--workers", "1", "--loop", "asyncio", "--http", "h11",
    "--log-level", "warning", "--no-access-log",
]  # fmt: skip


@dataclass(frozen=True)
class Server:
    name: str
    python: Path
    import_line: str
    env: tuple[tuple[str, str], ...] = ()


OURS = Server(
    "ghapp_celery", ROOT / ".venv" / "bin" / "python", "from ghapp_celery import GitHubApp"
)
THEIRS = Server(
    "fastapi-githubapp 0.2.7", THEIR_VENV / "bin" / "python", "from githubapp import GitHubApp"
)
# `--against unrecorded`: ours with the handled deliveries' record turned off, to measure what
# recording them costs (intake/handled.py); printed only, docs/performance.md quotes it.
UNRECORDED = Server(
    "ghapp_celery, not recorded",
    OURS.python,
    OURS.import_line,
    (("GITHUBAPP_RECORD_HANDLED_DELIVERIES", "false"),),
)


@dataclass(frozen=True)
class Scenario:
    name: str
    sleep: float
    concurrencies: tuple[int, ...]
    requests: int
    warmup: int


# --- environments and servers --------------------------------------------------------------


def ensure_their_venv() -> None:
    """Build fastapi-githubapp's own venv once, pinned to our uvicorn and FastAPI versions."""
    spec = [
        "fastapi-githubapp==0.2.7",
        f"uvicorn=={uvicorn.__version__}",
        f"fastapi=={fastapi.__version__}",
    ]
    stamp = THEIR_VENV / ".bench-ready"
    if stamp.exists() and stamp.read_text() == " ".join(spec):
        return
    print(f"Creating {THEIR_VENV.relative_to(ROOT)} with {' '.join(spec)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(THEIR_VENV)], check=True)
    subprocess.run(
        [str(THEIRS.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *spec],
        check=True,
    )
    stamp.write_text(" ".join(spec))


def versions(python: Path, modules: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run([str(python), "-c", code, *modules], capture_output=True, check=True)
    result: dict[str, str] = json.loads(out.stdout)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running(
    server: Server, workdir: Path, sleep: float, pids: list[int] | None = None
) -> Iterator[str]:
    """Start ``server``'s uvicorn with the user code; yield its webhook URL (and append the
    server's pid to ``pids``, for CPU accounting)."""
    module = "app_" + re.sub(r"\W", "_", server.name)
    (workdir / f"{module}.py").write_text(USER_CODE.format(import_line=server.import_line))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUBAPP_")}
    env |= {"BENCH_SECRET": SECRET, "BENCH_HANDLER_SLEEP": str(sleep)}
    # Our store (every delivery is recorded) in the run's own directory, never the checkout.
    env |= {"GITHUBAPP_DATA_DIR": str(workdir / f"{module}.data"), **dict(server.env)}
    command = [str(server.python), "-m", "uvicorn", f"{module}:app", "--app-dir", str(workdir)]
    proc = subprocess.Popen([*command, *UVICORN_FLAGS, "--port", str(port)], env=env)
    if pids is not None:
        pids.append(proc.pid)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server.name} did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}{ROUTE}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- the delivery ----------------------------------------------------------------------------


def delivery() -> tuple[bytes, dict[str, str]]:
    """The real issues/opened payload as GitHub sends an App: compact, with an installation.

    fastapi-githubapp answers 400 to a payload without ``installation``, and an App's
    deliveries of this event always carry one.
    """
    sys.path.insert(0, str(ROOT))  # a checkout without an editable install works too
    from ghapp_celery.webhooks import webhook_headers

    payload = json.loads(PAYLOAD.read_bytes())
    payload.setdefault(
        "installation", {"id": 1, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
    )
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = webhook_headers("issues", body, secret=SECRET, app_id=1)
    return body, headers


# --- the run ---------------------------------------------------------------------------------


def measure(
    scenarios: list[Scenario],
    rounds: int,
    body: bytes,
    headers: dict[str, str],
    theirs: Server = THEIRS,
) -> list[Comparison]:
    rows = {(s.name, c): Comparison(s.name, c) for s in scenarios for c in s.concurrencies}

    def fresh_headers() -> dict[str, str]:
        # A new delivery id per request, as GitHub does: a server deduplicating redeliveries
        # must not get an easy ride.
        return headers | {"X-GitHub-Delivery": str(uuid.uuid4())}

    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        for scenario in scenarios:
            with (
                running(OURS, Path(tmp), scenario.sleep) as ours_url,
                running(theirs, Path(tmp), scenario.sleep) as their_url,
            ):
                urls = {OURS.name: ours_url, theirs.name: their_url}
                for round_no in range(rounds):
                    # Alternate who goes first, so drift within a round favours neither.
                    order = [OURS, theirs] if round_no % 2 == 0 else [theirs, OURS]
                    for concurrency in scenario.concurrencies:
                        for server in order:
                            result = run_load(
                                urls[server.name],
                                body,
                                fresh_headers,
                                concurrency=concurrency,
                                requests=scenario.requests,
                                warmup=scenario.warmup,
                            )
                            row = rows[(scenario.name, concurrency)]
                            (row.ours if server is OURS else row.theirs).append(result)
                            print(
                                f"  {scenario.name:<14} c={concurrency:<3} round {round_no + 1}"
                                f"  {server.name:<24} {result.rps:8.1f} req/s"
                                f"  p50 {result.percentile(50):7.1f} ms"
                                f"  p99 {result.percentile(99):7.1f} ms",
                                flush=True,
                            )
    return list(rows.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run; writes nothing")
    parser.add_argument("--rounds", type=int, help="rounds per cell (default 5, quick 1)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--against",
        choices=["0.2.7", "unrecorded"],
        default="0.2.7",
        help="'theirs': fastapi-githubapp 0.2.7, or ours without recording handled deliveries "
        "(prints only)",
    )
    args = parser.parse_args()
    theirs = THEIRS if args.against == "0.2.7" else UNRECORDED

    quick = args.quick
    rounds = args.rounds or (1 if quick else 5)
    scenarios = [
        Scenario("no-op", 0.0, (1, 10, 100), requests=300 if quick else 3000, warmup=200),
        Scenario(f"sleep {SLEEP} s", SLEEP, (100,), requests=100 if quick else 300, warmup=20),
    ]
    ensure_their_venv()
    body, headers = delivery()
    ours_v = versions(OURS.python, ["fastapi", "starlette", "uvicorn", "httpx"])
    theirs_v = versions(THEIRS.python, ["fastapi-githubapp", "fastapi", "starlette", "uvicorn"])
    print(f"ours: {ours_v}\ntheirs: {theirs_v}\n{machine()}", flush=True)

    started = time.monotonic()
    rows = measure(scenarios, rounds, body, headers, theirs)
    elapsed = time.monotonic() - started
    print(f"\ntheirs = {theirs.name}\n" + table(rows) + f"\n\n({elapsed:.0f} s)")
    if quick or args.no_write or theirs is not THEIRS:
        return 0

    info = RunInfo(
        rounds=rounds,
        body_size=len(body),
        command="python -m uvicorn app:app " + " ".join(UVICORN_FLAGS),
        ours_versions=ours_v,
        theirs_versions=theirs_v,
        requests={s.name: (s.requests, s.warmup) for s in scenarios},
        sleep=SLEEP,
        elapsed=elapsed,
    )
    write_section(DOC, render_section(rows, info))
    print(f"Wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
