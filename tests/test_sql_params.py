"""A failed statement never puts its bound values in an exception's text or in a log.

The values are webhook payloads and their fields, user logins and (encrypted) GitHub tokens.
StoreUnavailable's own message is generic, but it chains SQLAlchemy's error, whose text would
list the parameters ("[parameters: ...]") in every logged traceback; the store's engine is
made with ``hide_parameters=True`` so it does not. Each test fails a real statement on a real
database (SQLite and PostgreSQL), logs it the way the intake does (``LOG.exception``), and
looks for a marker value everywhere the failure can be read.
"""

from __future__ import annotations

import logging
import sqlite3
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from ghapp_celery.store import DeliveryStore, RunPlan, StoreUnavailable
from ghapp_celery.store.oauth_repository import OAuthStore
from ghapp_celery.webhooks import Delivery
from tests._postgres import PostgresServer, postgres_server  # noqa: F401  (fixture)

MARKER = "MARKER-s3cr3t-7f1c"
LOG = logging.getLogger("ghapp_celery.test_sql_params")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"params_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"params_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def oauth_store(url: str) -> Iterator[OAuthStore]:
    store = OAuthStore(url)
    yield store
    store.dispose()


def assert_no_marker(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    """Nowhere: the exception, its chain, a logged traceback, any log record's text."""
    LOG.exception("Could not record (as the intake logs it)")
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), caplog.text]
    cause: BaseException | None = exc
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    texts += [record.getMessage() for record in caplog.records]
    assert "Traceback" in caplog.text  # the traceback really was logged
    for text in texts:
        assert MARKER not in text
        assert MARKER.encode().hex() not in text


def _save(store: OAuthStore, session_id: str) -> None:
    now = datetime.now(UTC)
    store.save_tokens(
        session_id=session_id,
        user_id=1,
        login=f"{MARKER}-login",
        access_token=f"{MARKER}-access".encode(),
        refresh_token=f"{MARKER}-refresh".encode(),
        access_expires_at=now + timedelta(hours=8),
        refresh_expires_at=None,
        session_expires_at=now + timedelta(days=1),
    )


def test_a_constraint_failure_hides_the_values(
    oauth_store: OAuthStore, caplog: pytest.LogCaptureFixture
) -> None:
    # The same session id twice: a UNIQUE violation, on either database.
    caplog.set_level(logging.DEBUG)
    _save(oauth_store, "session-1")
    with pytest.raises(StoreUnavailable) as caught:
        _save(oauth_store, "session-1")
    assert "IntegrityError" in str(caught.value)
    try:
        raise caught.value
    except StoreUnavailable as exc:
        assert_no_marker(exc, caplog)
    # The statement itself is still named, so the log stays useful.
    assert "INSERT INTO ghapp_oauth_tokens" in "".join(traceback.format_exception(caught.value))


def test_a_value_too_long_on_postgresql_hides_the_values(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The webhook intake's case: an ``action`` longer than its column (String(100)) fails the
    # INSERT whose parameters also carry the (compressed) payload.
    caplog.set_level(logging.DEBUG)
    store = DeliveryStore(pg_url)
    delivery = Delivery(
        id=str(uuid.uuid4()),
        event="issues",
        action=MARKER * 10,
        installation_id=42,
        hook_id=7,
        target_type="integration",
        target_id=99,
        payload={"action": MARKER * 10, "comment": MARKER},
        received_at=datetime.now(UTC),
    )
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.record(delivery, [RunPlan("h", "ghapp.h", "github.issues")])
        assert "DataError" in str(caught.value)
        try:
            raise caught.value
        except StoreUnavailable as exc:
            assert_no_marker(exc, caplog)
    finally:
        store.dispose()


def test_echo_logs_statements_without_their_values(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    store = OAuthStore(url, echo=True)
    try:
        _save(store, "session-echo")
        assert store.get_tokens("session-echo") is not None
    finally:
        store.dispose()
    assert "INSERT INTO ghapp_oauth_tokens" in caplog.text
    assert MARKER not in caplog.text


def test_a_failed_publish_to_kombus_sqlalchemy_broker_hides_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``sqla+`` brokers are kombu's SQLAlchemy transport, whose engine takes its options from
    # broker_transport_options: the message row it inserts holds the task's arguments.
    broker = tmp_path / "broker.sqlite"
    monkeypatch.setenv("CELERY_BROKER_URL", f"sqla+sqlite:///{broker}")
    monkeypatch.setenv("GITHUBAPP_DATA_DIR", str(tmp_path / "data"))
    from ghapp_celery import GitHubApp

    celery = GitHubApp().celery
    celery.send_task("ghapp.warm", args=["warm"], queue="github.default")  # creates the tables
    with sqlite3.connect(broker) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON kombu_message "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(IntegrityError) as caught:  # kombu lets SQLAlchemy's error through
        celery.send_task("ghapp.h", args=[MARKER], queue="github.default", retry=False)
    text = "".join(traceback.format_exception(caught.value))
    assert "INSERT INTO kombu_message" in text  # the failed statement, as it is logged
    assert "[parameters:" not in text
    assert "SQL parameters hidden" in text
