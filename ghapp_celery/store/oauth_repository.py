"""OAuthStore: GitHub user tokens per login session, and the session / state denylist.

It lives in the same database as the delivery store (same URL, same Alembic history, tables
``ghapp_oauth_*``) and keeps its conventions: one short transaction per method, every database
failure raised as StoreUnavailable, UTC-aware datetimes only, SQLite and PostgreSQL.

Tokens arrive here already encrypted: this module never sees a usable GitHub token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update

from . import _sql
from ._database import Database
from .models import oauth_denylist, oauth_tokens

__all__ = ["OAuthStore", "StoredTokens"]


def _utc(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    if when.tzinfo is None:
        raise ValueError("the store only accepts timezone-aware datetimes")
    return when.astimezone(UTC)


def _now(now: datetime | None) -> datetime:
    return _utc(now) or datetime.now(UTC)


@dataclass(frozen=True)
class StoredTokens:
    """One session's GitHub tokens, as stored (the token fields are ciphertext)."""

    session_id: str
    user_id: int
    login: str
    access_token: bytes
    refresh_token: bytes | None
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    session_expires_at: datetime
    version: int


class OAuthStore(Database):
    """Encrypted user tokens and the denylist; thread-safe and fork-aware like DeliveryStore."""

    # -- tokens ---------------------------------------------------------------------------------

    def save_tokens(
        self,
        *,
        session_id: str,
        user_id: int,
        login: str,
        access_token: bytes,
        refresh_token: bytes | None,
        access_expires_at: datetime | None,
        refresh_expires_at: datetime | None,
        session_expires_at: datetime,
        now: datetime | None = None,
    ) -> None:
        """Store a new session's tokens (a session id is never reused)."""
        stamp = _now(now)
        with self._tx(write=True) as conn:
            conn.execute(
                oauth_tokens.insert().values(
                    session_id=session_id,
                    user_id=user_id,
                    login=login,
                    access_token=access_token,
                    refresh_token=refresh_token,
                    access_expires_at=_utc(access_expires_at),
                    refresh_expires_at=_utc(refresh_expires_at),
                    session_expires_at=_utc(session_expires_at),
                    version=0,
                    created_at=stamp,
                    updated_at=stamp,
                )
            )

    def get_tokens(self, session_id: str) -> StoredTokens | None:
        with self._tx(write=False) as conn:
            row = conn.execute(
                select(oauth_tokens).where(oauth_tokens.c.session_id == session_id)
            ).one_or_none()
        if row is None:
            return None
        return StoredTokens(
            session_id=row.session_id,
            user_id=int(row.user_id),
            login=row.login,
            access_token=bytes(row.access_token),
            refresh_token=None if row.refresh_token is None else bytes(row.refresh_token),
            access_expires_at=row.access_expires_at,
            refresh_expires_at=row.refresh_expires_at,
            session_expires_at=row.session_expires_at,
            version=int(row.version),
        )

    def replace_tokens(
        self,
        session_id: str,
        *,
        expected_version: int,
        access_token: bytes,
        refresh_token: bytes | None,
        access_expires_at: datetime | None,
        refresh_expires_at: datetime | None,
        now: datetime | None = None,
    ) -> bool:
        """Store refreshed tokens unless another process refreshed first (then False)."""
        with self._tx(write=True) as conn:
            result = conn.execute(
                update(oauth_tokens)
                .where(
                    oauth_tokens.c.session_id == session_id,
                    oauth_tokens.c.version == expected_version,
                )
                .values(
                    access_token=access_token,
                    refresh_token=refresh_token,
                    access_expires_at=_utc(access_expires_at),
                    refresh_expires_at=_utc(refresh_expires_at),
                    version=expected_version + 1,
                    updated_at=_now(now),
                )
            )
        return result.rowcount == 1

    def delete_tokens(self, session_id: str) -> bool:
        with self._tx(write=True) as conn:
            result = conn.execute(
                delete(oauth_tokens).where(oauth_tokens.c.session_id == session_id)
            )
        return result.rowcount == 1

    def delete_user_tokens(self, user_id: int) -> int:
        """Forget every session's tokens of one user (their grant was revoked)."""
        with self._tx(write=True) as conn:
            result = conn.execute(delete(oauth_tokens).where(oauth_tokens.c.user_id == user_id))
        return int(result.rowcount)

    # -- denylist -------------------------------------------------------------------------------

    def deny(self, jti: str, kind: str, expires_at: datetime, now: datetime | None = None) -> bool:
        """Add ``jti``; False when it was already there (a replay), True the first time."""
        with self._tx(write=True) as conn:
            values = {"jti": jti, "kind": kind, "expires_at": _utc(expires_at)}
            values["created_at"] = _now(now)
            # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
            statement = (
                _sql.dialect_insert(conn.dialect.name)(oauth_denylist)
                .values(values)
                .on_conflict_do_nothing()
                .returning(oauth_denylist.c.jti)
            )
            inserted = conn.execute(statement).first()
        return inserted is not None

    def is_denied(self, jti: str) -> bool:
        with self._tx(write=False) as conn:
            found = conn.execute(
                select(oauth_denylist.c.jti).where(oauth_denylist.c.jti == jti)
            ).first()
        return found is not None

    def purge(self, now: datetime | None = None) -> int:
        """Delete denylist entries past their expiry and tokens of sessions that ended."""
        cutoff = _now(now)
        with self._tx(write=True) as conn:
            denied = conn.execute(
                delete(oauth_denylist).where(oauth_denylist.c.expires_at < cutoff)
            ).rowcount
            tokens = conn.execute(
                delete(oauth_tokens).where(oauth_tokens.c.session_expires_at < cutoff)
            ).rowcount
        return int(denied) + int(tokens)
