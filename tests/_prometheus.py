"""A real Prometheus server on 127.0.0.1 for tests (Debian's ``prometheus``; skipped locally,
failed in CI, when missing), and its HTTP query API."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests._redis import free_port
from tests.conftest import require_binary


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", params=params, timeout=5)
        answer.raise_for_status()
        return answer.json()["data"]

    def query(self, expr: str) -> float | None:
        """An instant query's one value, or None when it has no sample."""
        result = self.get("/api/v1/query", query=expr)["result"]
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, expected: float, timeout: float = 60.0) -> None:
        """Until ``expr`` reads ``expected`` (scrapes take a second or two to land)."""
        deadline = time.monotonic() + timeout
        got: float | None = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                got = self.query(expr)
            except httpx.TransportError:
                got = None
            if got == expected:
                return
            time.sleep(0.5)
        raise AssertionError(f"{expr} = {got}, not {expected}")


@contextmanager
def prometheus_server(workdir: Path, config: dict[str, Any]) -> Iterator[Prometheus]:
    """``prometheus`` with ``config`` (JSON is YAML) on a free port, ready for queries."""
    binary = require_binary("prometheus")
    port = free_port()
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    log = workdir / "prometheus.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
