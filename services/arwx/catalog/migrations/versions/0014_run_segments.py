"""Rewind and fork: a run's attempts and its visible history as segments of storage runs.

All columns are nullable, so existing runs need no backfill: NULL means one
attempt (attempt 0, stored under the run's own id) shown from step 0.

Revision ID: 0014
Revises: 0016
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("attempts", sa.JSON, nullable=True))
    op.add_column("runs", sa.Column("segments", sa.JSON, nullable=True))
    op.add_column("runs", sa.Column("forked_from", sa.String(256), nullable=True))
    op.add_column("runs", sa.Column("fork_step", sa.BigInteger, nullable=True))


def downgrade() -> None:
    for column in ("fork_step", "forked_from", "segments", "attempts"):
        op.drop_column("runs", column)
