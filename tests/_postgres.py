"""A throwaway PostgreSQL server for the test session.

``postgres_server`` runs initdb into a temporary directory, starts the server on 127.0.0.1 on
a free port (its Unix socket inside that directory too, so nothing touches /var/run), and stops
it at the end. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` system user, created when missing. Missing binaries skip the tests locally and
fail them in CI, like every other server the suite needs.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import IN_CI

__all__ = ["PostgresServer", "find_pg_bin", "postgres_server", "start_postgres"]

PG_USER = "postgres"


def find_pg_bin() -> str | None:
    """The directory holding initdb and pg_ctl: PATH first, then the Debian layout."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return os.path.dirname(initdb)
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(candidate, "initdb"), os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(PG_USER)


@dataclass
class PostgresServer:
    bin_dir: str
    data_dir: str
    port: int
    run_as: list[str]  # ["runuser", "-u", "postgres", "--"] as root, [] otherwise

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _pg(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [*self.run_as, os.path.join(self.bin_dir, tool), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)

    def create_database(self, name: str) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._pg("pg_ctl", "stop", "-D", self.data_dir, "-m", "immediate", "-w")

    def running(self) -> bool:
        """Whether the server is up (``pg_ctl status``)."""
        command = [
            *self.run_as,
            os.path.join(self.bin_dir, "pg_ctl"),
            "status",
            "-D",
            self.data_dir,
        ]
        return subprocess.run(command, capture_output=True, timeout=60).returncode == 0

    def start(self) -> None:
        """(Re)start the server on its port and data directory (after ``stop``: an outage)."""
        base = os.path.dirname(self.data_dir)
        # fsync off: the suite needs speed, not crash safety; the socket stays in our
        # directory. A zone far from UTC makes any missing UTC conversion visible.
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {base} -F -c max_connections=60 "
            "-c TimeZone=Asia/Kolkata"
        )
        self._pg(
            "pg_ctl", "start", "-D", self.data_dir, "-o", options, "-l",
            os.path.join(base, "server.log"), "-w", "-t", "30",
        )  # fmt: skip


def start_postgres(bin_dir: str) -> PostgresServer:
    base = tempfile.mkdtemp(prefix="ghapp-pg-")
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = _system_user()
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", PG_USER, "--"]
    server = PostgresServer(bin_dir, os.path.join(base, "data"), _free_port(), run_as)
    server._pg(
        "initdb", "-D", server.data_dir, "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync"
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    server = start_postgres(bin_dir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(os.path.dirname(server.data_dir), ignore_errors=True)
