"""Drop the index on handler runs' (state, lease_expires_at).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

Every start, finish and lease renewal of a run moved its entry in this index, and only the
sweeper's "started or retrying with an expired lease" search read it. That search now finds
the runs by state through ix_ghapp_handler_runs_state_updated: started and retrying runs are
the ones in flight, a few hundred at most, so checking their leases one by one costs the
sweeper less than keeping the index cost every run (on SQLite in process, a start plus a
finish went from about 245-305 to about 230 us of CPU).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_ghapp_handler_runs_state_lease", table_name="ghapp_handler_runs")


def downgrade() -> None:
    op.create_index(
        "ix_ghapp_handler_runs_state_lease", "ghapp_handler_runs", ["state", "lease_expires_at"]
    )
