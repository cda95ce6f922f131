"""Long-running processes of a user's app for tests: uvicorn, a celery worker, as subprocesses.

Each writes its output (stdout and stderr together, as a terminal shows them) to a file the
test reads, and runs in its own session so stopping it reaches the worker's pool children too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx


class Served:
    """A long-running process of a user's app (uvicorn, a celery worker), its output in a file,
    in its own session so stopping it reaches any children."""

    def __init__(self, name: str, command: Sequence[str], cwd: Path, env: Mapping[str, str]):
        self.name = name
        self.log = cwd / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout: float = 60.0) -> None:
        """Until ``text`` appears in the output; fails with the output if the process exits."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, f"{self.name}: no {text!r}:\n{self.output()}"
            time.sleep(0.1)

    def wait_for_http(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.output()[-4000:]}"
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url, timeout=2)
                return
            assert time.monotonic() < deadline, f"{self.name} not serving:\n{self.output()}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def __enter__(self) -> Served:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
