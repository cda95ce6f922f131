"""Flower 2.x watches our handlers on Redis: workers send task events, tasks carry our names.

A worker and Flower run as subprocesses on a redis-server this module starts; deliveries are
posted over HTTP; Flower's JSON API must then list each run (its task id is the run id) under
the handler's task name, on the handler's queue, with state SUCCESS. Flower runs the way
docs/production.md recommends: behind basic auth, which its API needs unless
FLOWER_UNAUTHENTICATED_API is set.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ghapp_celery import GitHubApp
from ghapp_celery.testing import serve
from ghapp_celery.webhooks import signed_request
from tests._redis import free_port, redis_server
from tests._workers import REPO_ROOT, CeleryWorker
from tests.conftest import IN_CI
from tests.payloads import load_payload
from tests.test_background import QUEUES, SECRET, environment, issue, make_app, post

USER, PASSWORD = "ops", "flower-test-password"
OPENED = "github.issues.opened:tests.bgapp.opened"
PUSH = "github.push:tests.bgapp.noop"


def require_flower() -> None:
    if importlib.util.find_spec("flower") is None:
        message = "flower is not installed: pip install 'flower>=2,<3' (the dev extra)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


class Flower:
    """``celery -A tests.bgapp:celery --broker URL flower`` as a subprocess on 127.0.0.1."""

    def __init__(self, broker: str, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = workdir / "flower.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self.command = [
            sys.executable, "-m", "celery", "-A", "tests.bgapp:celery", "--broker", broker,
            "flower", "--address=127.0.0.1", f"--port={self.port}", "--persistent=False",
            f"--basic-auth={USER}:{PASSWORD}",
        ]  # fmt: skip
        self.env = {**os.environ, **env}
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), self.env.get("PYTHONPATH")])
        )
        self.env.pop("FLOWER_UNAUTHENTICATED_API", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Flower:
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self.wait_healthy()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"flower exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthcheck", timeout=2).text == "OK":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"flower did not answer within {timeout} s:\n{self.log()}")

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            f"{self.url}/api/{path}", params=params, auth=(USER, PASSWORD), timeout=30
        )
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return "<no log>"


@pytest.fixture
def stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GitHubApp, str, CeleryWorker, Flower]]:
    require_flower()
    with redis_server(tmp_path / "redis") as broker:
        env = {
            **environment(tmp_path, broker),
            "GITHUBAPP_VISIBILITY_TIMEOUT": "120",
            "GITHUBAPP_TASK_EVENTS": "true",  # events are opt-in, as in Celery
        }
        app = make_app(monkeypatch, env)
        worker = CeleryWorker(
            "tests.bgapp:celery",
            broker,
            tmp_path / "worker",
            pool="threads",
            concurrency=4,
            queue=QUEUES,
            env=env,
            ready="ping",
            ping_app=app.celery,
        )
        flower = Flower(broker, tmp_path / "flower", env)
        with worker, flower, serve(app.web) as url:  # type: ignore[attr-defined]
            yield app, url, worker, flower


def test_task_events_are_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What Flower depends on: off by default (each event is a broker publish per task),
    on with GITHUBAPP_TASK_EVENTS=true (or celery worker -E)."""
    env = environment(tmp_path, "redis://127.0.0.1:1/0")
    monkeypatch.delenv("GITHUBAPP_TASK_EVENTS", raising=False)
    off = make_app(monkeypatch, env).celery.conf
    assert not off.worker_send_task_events and not off.task_send_sent_event
    conf = make_app(monkeypatch, {**env, "GITHUBAPP_TASK_EVENTS": "true"}).celery.conf
    assert conf.worker_send_task_events is True
    assert conf.task_send_sent_event is True
    assert conf.event_serializer == "json"


def test_flower_needs_its_credentials(stack: tuple[GitHubApp, str, CeleryWorker, Flower]) -> None:
    _, _, _, flower = stack
    assert httpx.get(f"{flower.url}/api/tasks", timeout=30).status_code == 401
    wrong = httpx.get(f"{flower.url}/api/tasks", auth=(USER, "nope"), timeout=30)
    assert wrong.status_code == 401


def test_flower_lists_our_worker_and_our_tasks_by_name(
    stack: tuple[GitHubApp, str, CeleryWorker, Flower],
) -> None:
    app, url, worker, flower = stack

    # The worker, through Flower's remote-control calls (Redis has remote control).
    deadline = time.monotonic() + 60
    workers: dict[str, Any] = {}
    while worker.nodename not in workers:
        assert time.monotonic() < deadline, (workers, flower.log())
        workers = flower.api("workers", refresh="1", workername=worker.nodename) or {}
        time.sleep(0.5)
    registered = set(workers[worker.nodename].get("registered", []))
    assert {OPENED, PUSH, "ghapp_celery.sweep"} <= registered
    queues = {q["name"] for q in workers[worker.nodename].get("active_queues", [])}
    assert queues == set(QUEUES.split(","))

    # Flower only sees events sent after its receiver connected; deliveries posted before
    # that are invisible to it, so post again until a pair shows up (normally the first).
    wanted: dict[str, str] = {}  # run id (= Celery task id) -> task name
    found: dict[str, Any] = {}
    deadline = time.monotonic() + 90
    next_post = 0.0
    while True:
        now = time.monotonic()
        assert now < deadline, (wanted, found, flower.log(), worker.log_tail())
        if now >= next_post:
            wanted.update(post_pair(app, url))
            next_post = now + 15
        tasks = flower.api("tasks", limit="1000")
        found = {tid: tasks[tid] for tid in wanted if tid in tasks}
        done = {found[tid]["name"] for tid in found if found[tid]["state"] == "SUCCESS"}
        if {OPENED, PUSH} <= done:
            break
        time.sleep(0.5)

    for task_id, task in found.items():
        assert task["name"] == wanted[task_id]  # our task names, not Celery's internal ones
        if task["state"] == "SUCCESS":
            assert task["worker"] == worker.nodename
            assert task["routing_key"] == (
                "github.bulk" if task["name"] == PUSH else "github.issues"
            )
            # The store agrees with Flower.
            run = app.store.get_run(task_id)
            assert run is not None and run.state.value == "succeeded"
            assert run.task_name == task["name"]

    # Flower's filter by task name (what an operator types in its search box).
    by_name = flower.api("tasks", taskname=PUSH, limit="1000")
    assert by_name and {task["name"] for task in by_name.values()} == {PUSH}


def post_pair(app: GitHubApp, url: str) -> dict[str, str]:
    """Post an issues.opened and a push; return run id -> task name for their runs."""
    body, headers, _ = issue("opened")
    runs = post(url, body, headers).json()["runs"]
    push_body, push_headers = signed_request(
        "push", load_payload("push/default.with-installation.json"), secret=SECRET
    )
    runs += post(url, push_body, push_headers).json()["runs"]
    assert len(runs) == 2, runs
    return {run["id"]: run["handler"] for run in runs}
