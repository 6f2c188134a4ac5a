"""Run lifecycle: tags and notes (edits), the last heartbeat (crash detection), soft delete.

All columns are nullable, so existing runs need no backfill: no tags, no
notes, never heartbeated (never judged crashed), not deleted.

Revision ID: 0009
Revises: 0010
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("tags", sa.JSON, nullable=True))
    op.add_column("runs", sa.Column("notes", sa.Text, nullable=True))
    op.add_column("runs", sa.Column("heartbeat_at", sa.BigInteger, nullable=True))
    op.add_column("runs", sa.Column("deleted_at", sa.BigInteger, nullable=True))
    # The crash sweep looks for running runs whose last heartbeat is old.
    op.create_index("ix_runs_status_heartbeat_at", "runs", ["status", "heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_status_heartbeat_at", table_name="runs")
    for column in ("deleted_at", "heartbeat_at", "notes", "tags"):
        op.drop_column("runs", column)
