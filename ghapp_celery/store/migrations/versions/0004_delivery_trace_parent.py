"""Add the deliveries' trace_parent: the W3C traceparent of a delivery's first webhook span.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

With tracing on, a redelivery's webhook span and a replay's or a sweep's publish span link to
the trace the delivery first came in with, which only the store still knows by then. Written
once, when the delivery row is inserted; NULL when tracing was off (or for rows from before
this migration). 55 characters today (version 00); String(64) leaves room.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: a metadata change only, on SQLite and PostgreSQL.
    op.add_column("ghapp_deliveries", sa.Column("trace_parent", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ghapp_deliveries") as batch:
        batch.drop_column("trace_parent")
