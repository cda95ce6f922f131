"""The deliveries' trace_parent (migration 0004), on SQLite and PostgreSQL: written when a
delivery is first recorded, never by its redelivery, which learns the stored one instead
(what its webhook span links to, see tests/test_trace_links.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ghapp_celery.store import DeliveryStore
from tests._postgres import PostgresServer, postgres_server  # noqa: F401  (fixture)
from tests.test_store import PLANS, make_delivery

FIRST = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
LATER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeliveryStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"trace_{uuid.uuid4().hex[:12]}")
    store = DeliveryStore(url)
    store.upgrade()
    yield store
    store.dispose()


def stored(store: DeliveryStore, delivery_id: str) -> str | None:
    record = store.get_delivery(delivery_id, with_payload=False)
    assert record is not None
    return record.trace_parent


def test_the_first_delivery_keeps_its_trace_parent_and_a_redelivery_reads_it(
    store: DeliveryStore,
) -> None:
    delivery, other = make_delivery(), make_delivery()
    originals: dict[str, str] = {}
    first = store.record_many(
        [(delivery, PLANS), (other, PLANS)],
        trace_parents={delivery.id: FIRST},  # the other one's request had no valid span
        originals=originals,
    )
    assert [len(runs) for runs in first if isinstance(runs, list)] == [2, 2]
    assert originals == {}  # both are new
    assert stored(store, delivery.id) == FIRST and stored(store, other.id) is None

    again: dict[str, str] = {}
    store.record_many([(delivery, PLANS)], trace_parents={delivery.id: LATER}, originals=again)
    assert again == {delivery.id: FIRST}
    assert stored(store, delivery.id) == FIRST  # not overwritten by the redelivery


def test_untraced_recording_leaves_it_null_and_reports_nothing(store: DeliveryStore) -> None:
    delivery = make_delivery()
    store.record_many([(delivery, PLANS)])
    assert stored(store, delivery.id) is None
    store.record_many([(delivery, PLANS)], trace_parents={delivery.id: LATER}, originals={})
    assert stored(store, delivery.id) is None  # a redelivery never writes it


def test_handled_deliveries_keep_theirs_too(store: DeliveryStore) -> None:
    traced, untraced = make_delivery(event="ping", action=None), make_delivery(event="ping")
    store.record_handled([(traced, True), (untraced, False)], {traced.id: FIRST})
    store.record_handled([(traced, True)], {traced.id: LATER})  # its redelivery
    assert stored(store, traced.id) == FIRST and stored(store, untraced.id) is None
    store.record_handled([(make_delivery(event="ping"), True)])  # tracing off: as before
