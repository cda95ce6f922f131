"""OAuthStore on SQLite and PostgreSQL: tokens per session, optimistic refresh, the denylist."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ghapp_celery.store import DeliveryStore, StoreUnavailable
from ghapp_celery.store.migrate import head_revision
from ghapp_celery.store.oauth_repository import OAuthStore
from tests._postgres import PostgresServer, postgres_server  # noqa: F401  (fixture)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OAuthStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/oauth.sqlite"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"oauth_{uuid.uuid4().hex[:12]}")
    oauth = OAuthStore(url)
    yield oauth
    oauth.dispose()


def _save(store: OAuthStore, session_id: str = "s1", user_id: int = 7) -> None:
    store.save_tokens(
        session_id=session_id,
        user_id=user_id,
        login="octocat",
        access_token=b"cipher-access",
        refresh_token=b"cipher-refresh",
        access_expires_at=NOW + timedelta(hours=8),
        refresh_expires_at=NOW + timedelta(days=180),
        session_expires_at=NOW + timedelta(days=1),
        now=NOW,
    )


def test_tokens_round_trip_with_aware_datetimes(store: OAuthStore) -> None:
    _save(store)
    row = store.get_tokens("s1")
    assert row is not None
    assert (row.user_id, row.login, row.version) == (7, "octocat", 0)
    assert row.access_token == b"cipher-access" and row.refresh_token == b"cipher-refresh"
    assert row.access_expires_at == NOW + timedelta(hours=8)
    assert row.access_expires_at.tzinfo is not None
    assert store.get_tokens("other") is None


def test_replace_tokens_is_optimistic(store: OAuthStore) -> None:
    _save(store)
    kwargs = {
        "access_token": b"new",
        "refresh_token": b"new-r",
        "access_expires_at": NOW + timedelta(hours=16),
        "refresh_expires_at": None,
    }
    assert store.replace_tokens("s1", expected_version=0, **kwargs)  # type: ignore[arg-type]
    assert not store.replace_tokens("s1", expected_version=0, **kwargs)  # type: ignore[arg-type]
    row = store.get_tokens("s1")
    assert row is not None and row.version == 1 and row.access_token == b"new"
    assert row.refresh_expires_at is None


def test_delete_tokens_per_session_and_per_user(store: OAuthStore) -> None:
    _save(store, "a", 1)
    _save(store, "b", 1)
    _save(store, "c", 2)
    assert store.delete_tokens("a") and not store.delete_tokens("a")
    assert store.delete_user_tokens(1) == 1
    assert store.get_tokens("c") is not None


def test_deny_is_once_only_even_under_racing_threads(store: OAuthStore) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def deny() -> None:
        barrier.wait(timeout=10)
        results.append(store.deny("state:abc", "state", NOW + timedelta(minutes=10)))

    threads = [threading.Thread(target=deny) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] * 5 + [True]
    assert store.is_denied("state:abc") and not store.is_denied("state:other")


def test_purge_drops_expired_entries_only(store: OAuthStore) -> None:
    store.deny("old", "session", NOW - timedelta(seconds=1), now=NOW - timedelta(days=1))
    store.deny("live", "session", NOW + timedelta(hours=1), now=NOW)
    _save(store, "ended")  # the session ends a day after NOW
    assert store.purge(now=NOW) == 1  # "old" only
    assert store.is_denied("live") and store.get_tokens("ended") is not None
    assert store.purge(now=NOW + timedelta(days=2)) == 2
    assert not store.is_denied("live") and store.get_tokens("ended") is None


def test_naive_datetimes_are_refused(store: OAuthStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.deny("x", "session", datetime(2026, 1, 1))


def test_shares_the_delivery_stores_database_and_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.sqlite"
    deliveries = DeliveryStore(url)
    deliveries.upgrade()
    assert deliveries.current_revision() == head_revision() == "0004"
    oauth = OAuthStore(url)
    _save(oauth)
    assert oauth.get_tokens("s1") is not None
    oauth.dispose()
    deliveries.dispose()


def test_unreachable_database_is_store_unavailable() -> None:
    oauth = OAuthStore("postgresql+psycopg://u:pw@127.0.0.1:9/none")
    with pytest.raises(StoreUnavailable) as caught:
        oauth.is_denied("x")
    assert "pw" not in str(caught.value)
