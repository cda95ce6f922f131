"""A real Prometheus scrapes a user's app: ``uvicorn myapp:app`` and a prefork
``celery -A myapp:celery worker``, both subprocesses started as a user starts them, with
``GITHUBAPP_METRICS_ENABLED`` and a worker metrics port. Deliveries go in signed over HTTP, the
handlers call a FakeGitHub, and every value is read back through Prometheus's query API,
with the operator kit's alerting rules loaded. Then the worker's pool children are SIGKILLed:
their counters stay in the worker's sum and their rate-limit gauges go (no stale series).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ghapp_celery.testing import FakeGitHub, WebhookClient
from tests._prometheus import Prometheus, prometheus_server
from tests._redis import free_port
from tests._served import Served
from tests._venvs import clean_env

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "ghapp-alerts.yml"
SECRET = "prometheus-test-secret"

MYAPP = """\
from fastapi import FastAPI
from ghapp_celery import Event, GitHubApp, GitHubAppError, RetryPolicy

app = FastAPI()
github_app = GitHubApp(app)
celery = github_app.celery


@github_app.on("issues.opened", background=True)
async def comment(event: Event) -> None:
    number = event.payload["issue"]["number"]
    await event.github.post(f"/repos/octo/hello/issues/{number}/comments", json={"body": "hi"})


@github_app.on("issues.closed", background=True, retry=RetryPolicy(max_retries=1, retry_backoff=0))
def always_502(event: Event) -> None:
    raise GitHubAppError("GitHub answered 502", status=502)
"""

OPENED = 6


def app_env(tmp_path: Path, fake: FakeGitHub, github_url: str, worker_port: int) -> dict[str, str]:
    """What the web app and the worker are started with: the fake's credentials, metrics on."""
    return clean_env(
        Path(sys.executable).parent,
        {
            "GITHUBAPP_DATA_DIR": str(tmp_path / ".ghapp"),
            "GITHUBAPP_ID": str(fake.app_id),
            "GITHUBAPP_PRIVATE_KEY": fake.private_key_pem,
            "GITHUBAPP_URL": github_url,
            "GITHUBAPP_WEBHOOK_SECRET": SECRET,
            "GITHUBAPP_METRICS_ENABLED": "true",
            "GITHUBAPP_METRICS_WORKER_PORT": str(worker_port),
            "GITHUBAPP_METRICS_WORKER_HOST": "127.0.0.1",
        },
    )


def worker_series(port: int) -> dict[str, float]:
    """The worker endpoint's samples, by name and labels, as one string key."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def check_the_scraped_values(prom: Prometheus) -> None:
    prom.wait_for('sum(ghapp_webhook_deliveries_total{job="ghapp-web",code="202"})', OPENED + 1)
    prom.wait_for('sum(ghapp_webhook_deliveries_total{event="unknown",code="401"})', 1)
    prom.wait_for('sum(ghapp_webhook_ack_seconds_count{job="ghapp-web"})', OPENED + 2)
    # Queued by the web process, started and ended in the worker's pool children.
    prom.wait_for('sum(ghapp_runs_total{job="ghapp-web",state="queued"})', OPENED + 1)
    prom.wait_for('sum(ghapp_runs_total{job="ghapp-worker",state="succeeded"})', OPENED)
    prom.wait_for('sum(ghapp_runs_total{job="ghapp-worker",state="started"})', OPENED + 2)
    prom.wait_for('sum(ghapp_runs_total{job="ghapp-worker",state="retrying"})', 1)
    prom.wait_for('sum(ghapp_runs_total{job="ghapp-worker",state="dead"})', 1)
    prom.wait_for('sum(ghapp_run_duration_seconds_count{job="ghapp-worker"})', OPENED + 2)
    prom.wait_for(
        'sum(ghapp_run_queue_wait_seconds_count{job="ghapp-worker",queue="github.issues"})',
        OPENED + 1,
    )
    # Read from the store by the web process: nothing waits, one run is dead.
    prom.wait_for('max(ghapp_queue_depth{queue="github.issues"})', 0)
    prom.wait_for("max(ghapp_runs_dead)", 1)
    # Every comment is one request; each pool child minted its own token (one or two).
    mints = prom.query('sum(ghapp_token_mints_total{job="ghapp-worker"})')
    assert mints is not None and 1 <= mints <= 2
    prom.wait_for(
        'sum(ghapp_github_requests_total{job="ghapp-worker",status_class="2xx"})', OPENED + mints
    )
    remaining = prom.query('min(ghapp_github_rate_limit_remaining{resource="core"})')
    assert remaining is not None and 0 < remaining < 5000
    prom.wait_for('count(up{job=~"ghapp-.*"} == 1)', 2)
    # The operator kit's rules are loaded and see the dead run.
    deadline = time.monotonic() + 30
    names: set[str] = set()
    while "GhappDeadRuns" not in names and time.monotonic() < deadline:
        names = {a["labels"]["alertname"] for a in prom.get("/api/v1/alerts")["alerts"]}
        time.sleep(0.5)
    assert names == {"GhappDeadRuns"}


@pytest.mark.timeout(180)
def test_prometheus_scrapes_the_web_app_and_a_prefork_worker(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(MYAPP)
    fake = FakeGitHub()
    fake.add_repo("octo/hello", issues=OPENED)
    web_port, worker_port = free_port(), free_port()
    with fake.serve() as github_url:
        env = app_env(tmp_path, fake, github_url, worker_port)
        web_command = [sys.executable, "-m", "uvicorn", "myapp:app", "--port", str(web_port)]
        worker_command = [
            sys.executable, "-m", "celery", "-A", "myapp:celery", "worker",
            "-P", "prefork", "-c", "2", "-Q", "github.issues", "--without-heartbeat",
            "--without-gossip", "--without-mingle", "--loglevel=INFO",
        ]  # fmt: skip
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {
                    "job_name": "ghapp-web",
                    "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}],
                },
                {
                    "job_name": "ghapp-worker",
                    "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
                },
            ],
        }
        with (
            Served("web", web_command, tmp_path, env) as web,
            Served("worker", worker_command, tmp_path, env) as worker,
            prometheus_server(tmp_path, config) as prom,
        ):
            web.wait_for_line("Application startup complete.")
            worker.wait_for_line("ready.")
            client = WebhookClient(f"http://127.0.0.1:{web_port}", SECRET, fake=fake)
            for number in range(1, OPENED + 1):
                opened = client.post("issues", {"issue": {"number": number}}, action="opened")
                assert opened.status_code == 202, opened.response.text
            assert (
                client.post("issues", {"issue": {"number": 1}}, action="closed").status_code == 202
            )
            forged = httpx.post(
                client.url, content=b"{}", headers={"X-GitHub-Event": "forged-event-name"}
            )
            assert forged.status_code == 401
            check_the_scraped_values(prom)

            # SIGKILL every pool child: Celery starts new ones. What the dead ones counted
            # stays in the worker's sum; the gauges they set leave with them.
            before = worker_series(worker_port)
            gauge = "ghapp_github_rate_limit_remaining{resource=core}"
            succeeded = next(k for k in before if "state=succeeded" in k)
            assert gauge in before and before[succeeded] == OPENED
            children = children_of(worker.proc.pid)
            assert len(children) == 2, children
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                fresh = children_of(worker.proc.pid)
                if len(fresh) == 2 and not set(fresh) & set(children):
                    break
                time.sleep(0.2)
            after = worker_series(worker_port)
            assert gauge not in after, sorted(after)
            assert after[succeeded] == OPENED
            prom.wait_for('sum(ghapp_runs_total{job="ghapp-worker",state="succeeded"})', OPENED)
            assert "Traceback" not in web.output()


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_the_worker_endpoint_serves_under_the_threads_and_solo_pools(
    tmp_path: Path, pool: str
) -> None:
    (tmp_path / "myapp.py").write_text(MYAPP)
    fake = FakeGitHub()
    fake.add_repo("octo/hello", issues=2)
    web_port, worker_port = free_port(), free_port()
    with fake.serve() as github_url:
        env = app_env(tmp_path, fake, github_url, worker_port)
        web_command = [sys.executable, "-m", "uvicorn", "myapp:app", "--port", str(web_port)]
        worker_command = [
            sys.executable, "-m", "celery", "-A", "myapp:celery", "worker", "-P", pool,
            "-Q", "github.issues", "--without-heartbeat", "--without-gossip",
            "--without-mingle", "--loglevel=INFO",
        ]  # fmt: skip
        with (
            Served("web", web_command, tmp_path, env) as web,
            Served("worker", worker_command, tmp_path, env) as worker,
        ):
            web.wait_for_line("Application startup complete.")
            worker.wait_for_line("ready.")
            client = WebhookClient(f"http://127.0.0.1:{web_port}", SECRET, fake=fake)
            for number in (1, 2):
                opened = client.post("issues", {"issue": {"number": number}}, action="opened")
                assert opened.status_code == 202
            deadline = time.monotonic() + 60
            series: dict[str, float] = {}
            task = "github.issues.opened:myapp.comment"
            succeeded = f"ghapp_runs_total{{queue=github.issues,state=succeeded,task={task}}}"
            while series.get(succeeded) != 2 and time.monotonic() < deadline:
                time.sleep(0.3)
                series = worker_series(worker_port)
            assert series.get(succeeded) == 2, sorted(series)
            assert series["ghapp_token_mints_total{}"] == 1
            assert series["ghapp_github_requests_total{status_class=2xx}"] == 3
            assert "ghapp_github_rate_limit_remaining{resource=core}" in series
