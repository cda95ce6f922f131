"""The deployment kit in deploy/ (issue 14 section 6), checked as far as this machine allows.

There is no Docker daemon or Kubernetes cluster here, so:

- the Dockerfile is parsed (stages, user, health check, command), what its builder stage
  copies is built into a wheel, and its HEALTHCHECK command is run against a real uvicorn;
- the compose file's services run their own commands, as written, against a real redis-server
  and a SQLite store: the migration, the web process (its health check and the image's), a
  worker on github.issues (its health check on the metrics port) and beat, with a real
  Prometheus scraping them by compose's prometheus.yml and evaluating KEDA's queries;
- the Kubernetes manifests are validated against the Kubernetes schemas that
  kubernetes-validate bundles (offline, ``--strict``); KEDA's ScaledObject is a CRD those
  schemas lack, so its structure is checked here (and its queries run in Prometheus above).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from ghapp_celery.config import Settings
from tests._prometheus import Prometheus, prometheus_server
from tests._redis import free_port, redis_server
from tests._served import Served

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
KUBE = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent
#: The Kubernetes version the manifests are validated against (bundled by kubernetes-validate).
KUBERNETES_VERSION = "1.37.0"
#: Every manifest kubernetes-validate has schemas for; the ScaledObject is checked apart.
CORE_MANIFESTS = [
    "configmap.yaml",
    "web.yaml",
    "worker-issues.yaml",
    "worker-default.yaml",
    "beat.yaml",
    "migrate-job.yaml",
    "hpa-external.yaml",
]
#: The gauges an autoscaler may read: per queue, store-backed or counted by the workers.
SCALING_METRICS = {"ghapp_queue_depth", "ghapp_queue_oldest_age_seconds", "ghapp_runs_in_flight"}


# -- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result = []
    for text in joined:
        word, _, rest = text.strip().partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) CMD; shell form would need a shell the checks do not assume."""
    value = yaml.safe_load(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def dockerfile_healthcheck() -> list[str]:
    (check,) = [rest for word, rest in dockerfile_instructions() if word == "HEALTHCHECK"]
    _, _, command = check.partition(" CMD ")
    return exec_form(command)


def test_dockerfile_is_multi_stage_non_root_with_a_health_check() -> None:
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    stages = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest).split()
        for word, rest in instructions
        if word == "FROM"
    ]
    assert [(s[0], s[-1]) for s in stages] == [
        ("python:3.11-slim", "builder"),
        ("python:3.11-slim", "runtime"),
    ]
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "pip wheel" in runs
    # The extras the runtime installs are extras the project declares.
    (extras,) = set(re.findall(r"ghapp-celery\[([a-z,]+)\]", runs))
    declared = tomllib_extras()
    assert set(extras.split(",")) == {"redis", "postgres", "prometheus"} <= declared
    assert any(word == "COPY" and rest.startswith("--from=builder") for word, rest in instructions)

    # The last USER wins; it must not be root by name or uid.
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}

    health = dockerfile_healthcheck()
    (url,) = re.findall(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", " ".join(health))
    assert url == ("8000", Settings().health_path)

    (cmd,) = [exec_form(rest) for word, rest in instructions if word == "CMD"]
    assert cmd == ["uvicorn", "myapp:app", "--host", "0.0.0.0", "--port", "8000"]  # noqa: S104
    assert cmd == compose_services()["web"]["command"]


def test_the_builder_stage_context_builds_a_complete_wheel(tmp_path: Path) -> None:
    """Exactly what the builder stage COPYs is enough for ``pip wheel`` (setuptools reads
    README.md for the metadata), and the wheel carries the migrations and samples."""
    instructions = dockerfile_instructions()
    runtime = [i for i, (word, rest) in enumerate(instructions) if word == "FROM"][1]
    src = tmp_path / "src"
    src.mkdir()
    for word, rest in instructions[:runtime]:
        if word == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                if (REPO / source).is_dir():
                    shutil.copytree(
                        REPO / source, src / source, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(REPO / source, src / source)
    # With build isolation, as the image builds: pip fetches the build-system's setuptools
    # (the venv's own may predate the license expression pyproject.toml uses).
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "--wheel-dir", str(tmp_path / "wheels"), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    (wheel,) = (tmp_path / "wheels").glob("ghapp_celery-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "ghapp_celery/py.typed" in names
    assert "ghapp_celery/store/migrations/script.py.mako" in names
    assert any(n.startswith("ghapp_celery/store/migrations/versions/") for n in names)
    assert any(n.startswith("ghapp_celery/samples/") and n.endswith(".json") for n in names)


def tomllib_extras() -> set[str]:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


def test_dockerignore_keeps_the_build_inputs_and_drops_secrets() -> None:
    from fnmatch import fnmatch

    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch(p, pat.removeprefix("**/")) for p in prefixes for pat in patterns)

    copied = [
        rest.split()[-2]
        for word, rest in dockerfile_instructions()
        if word == "COPY" and not rest.startswith("--from")
    ]
    sources = [s for s in copied if not s.startswith("$")] + ["pyproject.toml", "README.md"]
    for source in ["ghapp_celery/app.py", "deploy/docker/mount-point/README.md", *sources]:
        assert not ignored(source), source
    for secret in [".env", "github-app.pem", "deploy/compose/ghapp.env", ".git/config"]:
        assert ignored(secret), secret


# -- compose ---------------------------------------------------------------------------------


def compose_services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    services: dict[str, Any] = document["services"]
    return services


def test_compose_has_every_process_and_starts_them_after_the_migration() -> None:
    services = compose_services()
    assert set(services) == {
        "migrate", "web", "worker-issues", "worker-default", "beat", "redis", "postgres",
        "flower", "prometheus",
    }  # fmt: skip
    app_services = {"migrate", "web", "worker-issues", "worker-default", "beat", "flower"}
    for name in app_services:
        service = services[name]
        assert service["env_file"] == ["ghapp.env"], name
        env = service["environment"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert env["GITHUBAPP_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["GITHUBAPP_METRICS_ENABLED"] == "true"
        assert env["GITHUBAPP_METRICS_WORKER_PORT"] == "9808"
    for name in ["web", "worker-issues", "worker-default", "beat"]:
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
    assert services["migrate"]["command"] == ["ghapp-celery", "db", "upgrade"]
    assert services["beat"]["deploy"]["replicas"] == 1
    beats = [n for n, s in services.items() if " beat" in " ".join(s.get("command", []))]
    assert beats == ["beat"]
    # Prometheus loads the project's alert rules, under the name its config lists.
    config = yaml.safe_load((COMPOSE.parent / "prometheus.yml").read_text())
    mounts = services["prometheus"]["volumes"]
    assert "../prometheus/ghapp-alerts.yml:/etc/prometheus/ghapp-alerts.yml:ro" in mounts
    assert config["rule_files"] == ["ghapp-alerts.yml"]
    assert {job["job_name"] for job in config["scrape_configs"]} == {"ghapp-web", "ghapp-worker"}


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    from tests.conftest import require_binary

    promtool = require_binary("promtool")
    # promtool resolves rule_files next to the config, as Prometheus does in the container.
    (tmp_path / "prometheus.yml").write_text((COMPOSE.parent / "prometheus.yml").read_text())
    (tmp_path / "ghapp-alerts.yml").write_text((DEPLOY / "prometheus/ghapp-alerts.yml").read_text())
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def local(command: list[str], replace: dict[str, str]) -> list[str]:
    """A service's command as this machine runs it: the venv's script, test ports."""
    head = str(BIN / command[0]) if (BIN / command[0]).exists() else command[0]
    rest = [replace.get(arg, arg) for arg in command[1:]]
    return [head, *rest]


def healthcheck(test: list[str], port_from: str, port_to: str) -> list[str]:
    assert test[0] == "CMD"
    return [sys.executable if test[1] == "python" else test[1]] + [
        arg.replace(f"127.0.0.1:{port_from}/", f"127.0.0.1:{port_to}/") for arg in test[2:]
    ]


def passes(command: list[str], env: dict[str, str]) -> bool:
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode == 0


def wait_until_passes(command: list[str], env: dict[str, str], served: Served) -> None:
    deadline = time.monotonic() + 60
    while not passes(command, env):
        assert served.proc.poll() is None, served.output()[-4000:]
        assert time.monotonic() < deadline, f"{command} never passed:\n{served.output()}"
        time.sleep(0.5)


def test_compose_services_run_their_own_commands(tmp_path: Path) -> None:
    """migrate, web, worker-issues and beat, each started with its compose command."""
    services = compose_services()
    (tmp_path / "myapp.py").write_text(
        "from examples.quickstart.app import app, celery, github_app  # noqa: F401\n"
    )
    web_port, worker_port = free_port(), free_port()
    (tmp_path / "data").mkdir()  # as the image's /var/lib/ghapp, owned by its user
    with redis_server(tmp_path / "redis") as broker:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GITHUBAPP")},
            **services["web"]["environment"],
            # Compose's hosts (redis, postgres) are this machine's test servers; the store is
            # SQLite here (the PostgreSQL path is tests/test_production.py's).
            "CELERY_BROKER_URL": broker,
            "GITHUBAPP_DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite'}",
            "GITHUBAPP_METRICS_WORKER_PORT": str(worker_port),
            "GITHUBAPP_DATA_DIR": str(tmp_path / "data"),
            "PYTHONPATH": f"{tmp_path}:{REPO}",
        }
        migrate = subprocess.run(
            local(services["migrate"]["command"], {}),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        assert "Store at revision" in migrate.stdout

        # Loopback here, where compose binds every interface of the container.
        loopback = {"8000": str(web_port), "0.0.0.0": "127.0.0.1"}  # noqa: S104
        web_cmd = local(services["web"]["command"], loopback)
        with contextlib.ExitStack() as stack, Served("web", web_cmd, tmp_path, env) as web:
            base = f"http://127.0.0.1:{web_port}"
            web.wait_for_http(f"{base}/healthz")
            compose_check = healthcheck(
                services["web"]["healthcheck"]["test"], "8000", str(web_port)
            )
            image_check = [sys.executable, *dockerfile_healthcheck()[1:]]
            image_check = [a.replace(":8000/", f":{web_port}/") for a in image_check]
            assert passes(compose_check, env) and passes(image_check, env)
            assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
            prometheus = stack.enter_context(
                prometheus_server(tmp_path, prometheus_config(web_port, worker_port, tmp_path))
            )

            # A delivery with no worker yet: the queue gauges the autoscalers read show it.
            receive = subprocess.run(
                [str(BIN / "ghapp-celery"), "receive", "issues.opened", "--url",
                 f"{base}{Settings().webhook_path}"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert receive.returncode == 0, receive.stdout + receive.stderr
            # KEDA's own queries, evaluated by a real Prometheus scraping with compose's config.
            depth, age, in_flight = keda_queries()
            prometheus.wait_for(depth, 1.0)
            wait_for_value(prometheus, age, lambda value: value > 0)
            prometheus.wait_for(in_flight, 0.0)

            worker_cmd = local(services["worker-issues"]["command"], {})
            with Served("worker-issues", worker_cmd, tmp_path, env) as worker:
                check = healthcheck(
                    services["worker-issues"]["healthcheck"]["test"], "9808", str(worker_port)
                )
                wait_until_passes(check, env, worker)
                # The worker ran the waiting run: the depth the autoscaler reads drops to 0,
                # and compose's worker job scrapes the worker's port.
                prometheus.wait_for(depth, 0.0)
                prometheus.wait_for('max(up{job="ghapp-worker"})', 1.0)
            # Stopped, its health check fails: the probe can tell.
            assert not passes(check, env)

            # The image's data dir, where beat keeps its schedule, is the test's own here.
            schedule = "/var/lib/ghapp/celerybeat-schedule"
            beat_schedule = {schedule: str(tmp_path / "data" / "celerybeat-schedule")}
            with Served(
                "beat", local(services["beat"]["command"], beat_schedule), tmp_path, env
            ) as beat:
                beat.wait_for_line(f"db -> {beat_schedule[schedule]}")
                # The scheduler opened its state file where the image keeps it: it is running.
                deadline = time.monotonic() + 30
                while not list((tmp_path / "data").glob("celerybeat-schedule*")):
                    assert beat.proc.poll() is None, beat.output()
                    assert time.monotonic() < deadline, beat.output()
                    time.sleep(0.2)
        assert not passes(compose_check, env)


def prometheus_config(web_port: int, worker_port: int, workdir: Path) -> dict[str, Any]:
    """deploy/compose/prometheus.yml with this machine's targets and a 1 s scrape interval;
    its rules file beside it, as compose mounts it."""
    config: dict[str, Any] = yaml.safe_load((COMPOSE.parent / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    targets = {"ghapp-web": web_port, "ghapp-worker": worker_port}
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    (workdir / "ghapp-alerts.yml").write_text((DEPLOY / "prometheus/ghapp-alerts.yml").read_text())
    return config


def wait_for_value(prometheus: Prometheus, expr: str, ok: Callable[[float], bool]) -> None:
    deadline = time.monotonic() + 60
    while (value := prometheus.query(expr)) is None or not ok(value):
        assert time.monotonic() < deadline, f"{expr} = {value}"
        time.sleep(0.5)


# -- Kubernetes ------------------------------------------------------------------------------


def manifests(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((KUBE / name).read_text()) if doc]


def kubernetes_validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict"]
    return subprocess.run([*command, *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_kubernetes_manifests_validate_against_the_schemas(tmp_path: Path) -> None:
    every = sorted(p.name for p in KUBE.glob("*.yaml"))
    assert every == sorted([*CORE_MANIFESTS, "keda-scaledobject.yaml"])
    result = kubernetes_validate([KUBE / name for name in CORE_MANIFESTS])
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {doc["kind"] for name in CORE_MANIFESTS for doc in manifests(name)}
    passed = result.stdout + result.stderr
    assert passed.count(" passed for resource ") == sum(len(manifests(n)) for n in CORE_MANIFESTS)
    assert {"Deployment", "Service", "PodDisruptionBudget", "Job"} <= kinds
    # The validation can fail: a misspelt probe field is refused under --strict.
    broken = tmp_path / "web.yaml"
    broken.write_text(
        (KUBE / "web.yaml").read_text().replace("timeoutSeconds: 5", "timeoutSecs: 5")
    )
    assert kubernetes_validate([broken]).returncode != 0


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (only,) = doc["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def test_kubernetes_probes_replicas_and_commands() -> None:
    settings = Settings()
    deployment, service, pdb = manifests("web.yaml")
    web = container(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    assert web["livenessProbe"]["httpGet"]["path"] == settings.health_path
    assert web["readinessProbe"]["httpGet"]["path"] == settings.ready_path
    # /readyz gives its own check 3 s; the probe must wait longer than that.
    assert web["readinessProbe"]["timeoutSeconds"] == 5
    assert web["resources"]["requests"] and web["resources"]["limits"]
    assert web["command"] == compose_services()["web"]["command"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == labels == pdb["spec"]["selector"]["matchLabels"]

    config = manifests("configmap.yaml")[0]["data"]
    for name in ["worker-issues", "worker-default"]:
        (doc,) = manifests(f"{name}.yaml")
        worker = container(doc)
        probe = worker["livenessProbe"]["httpGet"]
        port = {p["name"]: p["containerPort"] for p in worker["ports"]}[probe["port"]]
        assert (probe["path"], str(port)) == ("/metrics", config["GITHUBAPP_METRICS_WORKER_PORT"])
        compose = compose_services()[name]["command"]
        # The same command as compose's, up to the node name (a pod's name, not %h).
        assert worker["command"][:-1] == compose[:-1], name
    assert "github.default" in container(manifests("worker-default.yaml")[0])["command"][5]

    (beat,) = manifests("beat.yaml")
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    assert container(beat)["command"] == compose_services()["beat"]["command"]
    (job,) = manifests("migrate-job.yaml")
    assert job["kind"] == "Job" and container(job)["command"] == ["ghapp-celery", "db", "upgrade"]


def keda_queries() -> list[str]:
    (scaled,) = manifests("keda-scaledobject.yaml")
    return [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]


def test_keda_scaled_object_scales_the_issue_workers_on_the_store_gauges() -> None:
    (scaled,) = manifests("keda-scaledobject.yaml")
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    (target,) = manifests("worker-issues.yaml")
    assert scaled["spec"]["scaleTargetRef"]["name"] == target["metadata"]["name"]
    command = container(target)["command"]
    queue = command[command.index("-Q") + 1]
    triggers = scaled["spec"]["triggers"]
    assert len(triggers) >= 2
    used = set()
    for trigger in triggers:
        assert trigger["type"] == "prometheus"
        meta = trigger["metadata"]
        assert meta["serverAddress"].startswith("http")
        float(meta["threshold"])  # KEDA wants a number, written as a string
        names = re.findall(r"\b(ghapp_\w+)\{queue=\"([\w.]+)\"\}", meta["query"])
        assert names and all(q == queue for _, q in names), meta["query"]
        assert {n for n, _ in names} <= SCALING_METRICS, meta["query"]
        used |= {n for n, _ in names}
    assert {"ghapp_queue_depth", "ghapp_queue_oldest_age_seconds"} <= used

    (hpa,) = manifests("hpa-external.yaml")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] in SCALING_METRICS
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"queue": queue}
    assert hpa["spec"]["scaleTargetRef"]["name"] == target["metadata"]["name"]


def test_compose_commands_are_the_documented_ones() -> None:
    """Each app service's command appears, as written, in docs/production.md's or
    docs/deployment.md's commands (up to the worker's queues and node name)."""
    documented = (REPO / "docs/production.md").read_text() + (
        REPO / "docs/deployment.md"
    ).read_text()
    for name, service in compose_services().items():
        command = service.get("command")
        if not command or command[0] not in {"uvicorn", "celery", "ghapp-celery"}:
            continue
        text = shlex.join(command)
        if " worker " in text:
            text = text.split(" -Q ")[0]
        if " flower " in text:
            text = text.split(" --address")[0]
        assert text in documented, (name, text)
