"""A real rabbitmq-server on 127.0.0.1 for tests (skipped locally, failed in CI, when missing).

Each server is a node of its own (``rabbit-<port>@localhost``) with its own AMQP, distribution
and epmd ports, its data, logs, config and Erlang cookie (``HOME``) under the test's directory,
and no plugins, so it starts in a few seconds beside any other RabbitMQ on the machine and
leaves nothing behind. Debian's /usr/sbin scripts switch to the ``rabbitmq`` user, losing that
environment; the scripts they wrap (/usr/lib/rabbitmq/bin) are run directly instead.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kombu.connection import Connection

from tests._redis import free_port
from tests.conftest import require_binary

_DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")


@dataclass(frozen=True)
class RabbitMQ:
    url: str
    node: str
    env: dict[str, str] = field(repr=False)  # the test process's environment: not in messages
    scripts: Path
    start_seconds: float

    def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        """Run ``rabbitmqctl`` (or another CLI tool) against this node; its stdout."""
        done = subprocess.run(
            [str(self.scripts / tool), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout

    def queue_types(self) -> dict[str, str]:
        """Every queue's name and type (``quorum``, ``classic``)."""
        out = self.ctl("list_queues", "name", "type", "--quiet", "--no-table-headers")
        return dict(line.split("\t", 1) for line in out.strip().splitlines() if "\t" in line)


def _scripts() -> Path:
    found = Path(require_binary("rabbitmq-server")).parent
    return _DEBIAN_SCRIPTS if (_DEBIAN_SCRIPTS / "rabbitmq-server").exists() else found


def _answers(url: str) -> bool:
    try:
        with Connection(url, connect_timeout=1) as conn:  # type: ignore[no-untyped-call]
            conn.ensure_connection(max_retries=0, timeout=1)
        return True
    except Exception:
        return False


@contextmanager
def rabbitmq_server(workdir: Path, timeout: float = 60.0) -> Iterator[RabbitMQ]:
    """Start rabbitmq-server on free loopback ports; yield it once an AMQP connection works."""
    scripts = _scripts()
    port, dist_port, epmd_port = free_port(), free_port(), free_port()
    node = f"rabbit-{port}@localhost"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "rabbitmq.conf"
    # guest may only log in from loopback (RabbitMQ's default), which is where the tests are.
    config.write_text(f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users.guest = true\n")
    plugins = workdir / "enabled_plugins"
    plugins.write_text("[].\n")
    env = {
        **os.environ,
        "HOME": str(workdir),  # the Erlang cookie the server and the CLI tools share
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_CONFIG_FILE": str(config),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(workdir / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
        "RABBITMQ_PLUGINS_EXPAND_DIR": str(workdir / "plugins-expand"),
    }
    url = f"amqp://guest:guest@127.0.0.1:{port}//"
    started = time.monotonic()
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(scripts / "rabbitmq-server")],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = started + timeout
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (workdir / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"rabbitmq-server did not start:\n{tail}")
            time.sleep(0.1)
        yield RabbitMQ(url, node, env, scripts, time.monotonic() - started)
    finally:
        proc.terminate()  # the script passes SIGTERM on to the Erlang VM, which stops cleanly
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        # The VM started an epmd of its own on epmd_port; it outlives the VM unless told.
        epmd = Path(require_binary("epmd"))
        subprocess.run(
            [str(epmd), "-port", str(epmd_port), "-kill"],
            env=env,
            capture_output=True,
            timeout=10,
            check=False,
        )
