"""OAuth: encrypted user tokens per login session, and the session / state denylist.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01

Frozen once released, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ghapp_oauth_tokens",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("login", sa.String(255), nullable=False),
        sa.Column("access_token", sa.LargeBinary(), nullable=False),
        sa.Column("refresh_token", sa.LargeBinary(), nullable=True),
        sa.Column("access_expires_at", _TS, nullable=True),
        sa.Column("refresh_expires_at", _TS, nullable=True),
        sa.Column("session_expires_at", _TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_ghapp_oauth_tokens"),
    )
    op.create_index("ix_ghapp_oauth_tokens_user", "ghapp_oauth_tokens", ["user_id"])
    op.create_index(
        "ix_ghapp_oauth_tokens_session_expires", "ghapp_oauth_tokens", ["session_expires_at"]
    )
    op.create_table(
        "ghapp_oauth_denylist",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_ghapp_oauth_denylist"),
    )
    op.create_index("ix_ghapp_oauth_denylist_expires", "ghapp_oauth_denylist", ["expires_at"])


def downgrade() -> None:
    op.drop_table("ghapp_oauth_denylist")
    op.drop_table("ghapp_oauth_tokens")
