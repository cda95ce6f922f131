"""The store's cheap schema check: it must agree with Alembic, and spare Alembic's import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ghapp_celery.store import DeliveryStore
from ghapp_celery.store._schema import SCHEMA_HEAD, at_head
from ghapp_celery.store.migrate import head_revision

PROBE = """
import sys
from ghapp_celery.store import DeliveryStore
store = DeliveryStore(sys.argv[1])
store.counts()
print("alembic" in sys.modules)
"""


def test_pinned_head_is_alembics_head() -> None:
    assert head_revision() == SCHEMA_HEAD


def test_a_store_at_head_opens_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    probe = [sys.executable, "-c", PROBE, url]
    # First open: a new database, so Alembic migrates it.
    assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip() == (
        "True"
    )
    store = DeliveryStore(url)
    assert at_head(store._engine)
    # Every later process: one SELECT, no Alembic.
    assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip() == (
        "False"
    )
