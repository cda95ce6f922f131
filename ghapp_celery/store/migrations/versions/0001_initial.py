"""Deliveries and handler runs.

Revision ID: 0001
Revises:
Create Date: 2025-11-27

Frozen: later schema changes go in new revisions, never here, because databases in the field
already carry this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ghapp_deliveries",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=True),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("hook_id", sa.BigInteger(), nullable=True),
        sa.Column("target_type", sa.String(100), nullable=True),
        sa.Column("target_id", sa.BigInteger(), nullable=True),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("redeliveries", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ghapp_deliveries"),
    )
    op.create_index("ix_ghapp_deliveries_received", "ghapp_deliveries", ["received_at", "id"])
    op.create_index(
        "ix_ghapp_deliveries_event_received", "ghapp_deliveries", ["event", "received_at"]
    )
    op.create_index(
        "ix_ghapp_deliveries_installation_received",
        "ghapp_deliveries",
        ["installation_id", "received_at"],
    )
    op.create_index(
        "ix_ghapp_deliveries_state_received", "ghapp_deliveries", ["state", "received_at"]
    )

    op.create_table(
        "ghapp_handler_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("delivery_id", sa.String(100), nullable=False),
        sa.Column("handler", sa.String(255), nullable=False),
        sa.Column("task_name", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("published_at", _TS, nullable=True),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("lease_expires_at", _TS, nullable=True),
        sa.Column("lease_seconds", sa.Float(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ghapp_handler_runs"),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["ghapp_deliveries.id"],
            name="fk_ghapp_handler_runs_delivery_id_ghapp_deliveries",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "delivery_id", "handler", name="uq_ghapp_handler_runs_delivery_handler"
        ),
    )
    op.create_index(
        "ix_ghapp_handler_runs_state_updated", "ghapp_handler_runs", ["state", "updated_at"]
    )
    op.create_index(
        "ix_ghapp_handler_runs_state_lease", "ghapp_handler_runs", ["state", "lease_expires_at"]
    )


def downgrade() -> None:
    op.drop_table("ghapp_handler_runs")
    op.drop_table("ghapp_deliveries")
