"""Fresh virtual environments holding the package with one extra, installed as a user installs it.

Each environment is ``python3 -m venv`` (no system site packages) and gets
``pip install 'ghapp_celery-....whl[extra]'``: pip resolves that extra's dependencies from the
package's metadata, so the environment holds exactly what the package declares and nothing the
development install brings along (pytest alone pulls in ``packaging``, which hid a missing
dependency of the ``[redis]`` extra).

Measured shortcuts (2 busy cores) that change nothing in what gets installed:

- one ``pip wheel`` of the package with all its extras fills a wheelhouse from the configured
  index (and pip's cache) once, 38 s; each environment then resolves and installs its own set
  from it with ``--no-index`` in 5 s, where resolving against the index took 20-45 s each
  (four side by side: 140-190 s);
- ``--without-pip`` and the running pip's ``--python``: ensurepip costs 6 s per environment,
  and pip's runner imports only ``pip`` itself from the outer environment.

Processes a test starts in an environment get :func:`clean_env`: its ``bin`` first on PATH and
none of the outer environment's PYTHONPATH or configuration variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 300.0


def build_wheelhouse(dest: Path, extras: Sequence[str]) -> Path:
    """The package's wheel and the wheels of everything its ``extras`` could need, in ``dest``;
    returns the package's wheel. The one step that resolves against the index."""
    dest.mkdir(parents=True, exist_ok=True)
    requirement = f"{REPO_ROOT}[{','.join(extras)}]"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(dest), requirement],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert done.returncode == 0, f"pip wheel {requirement} failed:\n{done.stderr[-4000:]}"
    (wheel,) = dest.glob("ghapp_celery-*.whl")
    return wheel


@dataclass
class Install:
    """One environment being created: ``wait()`` for it, then use ``bin``."""

    extra: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.time)
    seconds: float | None = None

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def wait(self) -> Install:
        try:
            self.proc.wait(INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.seconds is None:
            # pip's last line of output is when it finished, not when a test came to wait.
            self.seconds = round(self.log.stat().st_mtime - self.started, 1)
        output = self.log.read_text(errors="replace")
        assert self.proc.returncode == 0, f"pip install [{self.extra}] failed:\n{output[-4000:]}"
        return self


def start_install(wheel: Path, extra: str, root: Path) -> Install:
    """Create a venv at ``root`` and start installing ``wheel[extra]`` (``""``: the base) in it,
    resolved from the wheelhouse ``wheel`` lies in (:func:`build_wheelhouse`)."""
    # This interpreter's venv module: the environment gets the Python the suite runs on.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    requirement = f"{wheel}[{extra}]" if extra else str(wheel)
    log = root.with_suffix(".pip.log")
    command = [
        sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"),
        "install", "--no-compile", "--no-input", "--no-index", "--find-links", str(wheel.parent),
        requirement,
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return Install(extra, root, proc, log)


def clean_env(venv_bin: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process run from ``venv_bin``: none of this session's Python or
    ghapp_celery/Celery configuration, only ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
        and not key.startswith(("GITHUBAPP_", "CELERY_", "GHAPP_"))
    }
    env["PATH"] = os.pathsep.join([str(venv_bin), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv_bin.parent)
    env.update(extra or {})
    return env
