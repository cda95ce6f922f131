"""Table definitions (SQLAlchemy Core). The migration in ``migrations/versions`` is the
authority for the schema; a test checks that these tables and the migrations agree.

Every table carries the ``ghapp_`` prefix so the store can share a database with the
application's own tables, and later tables (OAuth tokens, a session denylist) fit alongside.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

__all__ = ["UTCDateTime", "deliveries", "metadata", "runs"]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware DateTime that always comes back as an aware UTC datetime.

    PostgreSQL keeps the zone (timestamptz) but answers in the session's zone; SQLite keeps
    text and answers naive. Values are normalised to UTC on the way in, and naive values on the
    way out are UTC by construction. SQLite compares these as text, which is correct because
    SQLAlchemy writes them in one fixed-width format and all of them are UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store only accepts timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


deliveries = Table(
    "ghapp_deliveries",
    metadata,
    # X-GitHub-Delivery: a UUID from GitHub, "local-<uuid>" for hand-made deliveries.
    Column("id", String(100), primary_key=True),
    Column("event", String(100), nullable=False),
    Column("action", String(100)),
    Column("installation_id", BigInteger),
    Column("hook_id", BigInteger),
    Column("target_type", String(100)),
    Column("target_id", BigInteger),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("redeliveries", Integer, nullable=False, default=0),
    # zlib-compressed JSON: payloads reach 25 MB and compress 5-10x.
    Column("payload", LargeBinary, nullable=False),
    # The W3C traceparent of the delivery's first webhook span (tracing on, else NULL): what
    # a redelivery's, a replay's or a sweep's spans link to (migration 0004).
    Column("trace_parent", String(64)),
    Index("ix_ghapp_deliveries_received", "received_at", "id"),
    Index("ix_ghapp_deliveries_event_received", "event", "received_at"),
    Index("ix_ghapp_deliveries_installation_received", "installation_id", "received_at"),
    Index("ix_ghapp_deliveries_state_received", "state", "received_at"),
)

runs = Table(
    "ghapp_handler_runs",
    metadata,
    Column("id", String(36), primary_key=True),  # uuid4, also the Celery task id
    Column(
        "delivery_id",
        String(100),
        ForeignKey("ghapp_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("handler", String(255), nullable=False),
    Column("task_name", String(255), nullable=False),
    Column("queue", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    # When the run entered its current state: the sweeper's clock for RECEIVED runs, which
    # must restart when a failed run is re-armed (created_at stays the first recording).
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("published_at", UTCDateTime()),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("lease_expires_at", UTCDateTime()),
    # The lease length the claim asked for, so a retry can extend it past its countdown.
    Column("lease_seconds", Float),
    Column("duration_ms", Float),
    UniqueConstraint("delivery_id", "handler", name="uq_ghapp_handler_runs_delivery_handler"),
    # The sweeper's index (RECEIVED/QUEUED by age; STARTED/RETRYING, the runs in flight, by
    # state alone, their leases checked row by row). A second index on the lease cost every
    # start, finish and renewal more than it saved the sweeper (migration 0003).
    Index("ix_ghapp_handler_runs_state_updated", "state", "updated_at"),
)

# -- OAuth (user login): see docs/oauth.md ---------------------------------------------------

# GitHub's user tokens of one login session, encrypted (Fernet) by ghapp_celery.oauth before
# they reach the database. One row per session: a user signed in from two browsers holds two
# token pairs, and logging out of one leaves the other alone.
oauth_tokens = Table(
    "ghapp_oauth_tokens",
    metadata,
    Column("session_id", String(64), primary_key=True),  # the session JWT's jti
    Column("user_id", BigInteger, nullable=False),
    Column("login", String(255), nullable=False),
    Column("access_token", LargeBinary, nullable=False),
    Column("refresh_token", LargeBinary),  # absent when the app opted out of expiring tokens
    Column("access_expires_at", UTCDateTime()),
    Column("refresh_expires_at", UTCDateTime()),
    Column("session_expires_at", UTCDateTime(), nullable=False),
    # Bumped by each refresh: two processes refreshing at once find out which one won.
    Column("version", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_ghapp_oauth_tokens_user", "user_id"),
    Index("ix_ghapp_oauth_tokens_session_expires", "session_expires_at"),
)

# Identifiers that must not be accepted again until they expire on their own: the jti of a
# logged-out session, and the (hashed) state of a login that already came back.
oauth_denylist = Table(
    "ghapp_oauth_denylist",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # "session" | "state"
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_ghapp_oauth_denylist_expires", "expires_at"),
)
