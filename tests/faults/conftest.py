"""Fixtures of the fault suite: a PostgreSQL server of its own (tests stop and lock it)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._postgres import PostgresServer, find_pg_bin, start_postgres
from tests.conftest import IN_CI


@pytest.fixture(scope="session")
def faults_postgres() -> Iterator[PostgresServer]:
    """A private server: the suite stops it and takes table locks, so it shares it with no
    other test module."""
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
        shutil.rmtree(Path(server.data_dir).parent, ignore_errors=True)


@pytest.fixture
def pg_store(faults_postgres: PostgresServer) -> Iterator[str]:
    """A fresh database on the suite's server, its URL; the server is running again after
    the test even if the test stopped it and failed."""
    yield faults_postgres.create_database(f"faults_{uuid.uuid4().hex[:10]}")
    if not faults_postgres.running():
        faults_postgres.start()
