"""Organizations, API keys, runs and their writer totals; the state counters.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    state = op.create_table(
        "catalog_state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_catalog_state"),
    )
    # The counter exists from the start, so a bump is always an UPDATE (no
    # insert race between two processes).
    op.bulk_insert(state, [{"name": "keys", "value": 0}])
    op.create_table(
        "orgs",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", name="pk_orgs"),
    )
    op.create_index("ix_orgs_name", "orgs", ["name"])
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_api_keys_org_orgs"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_org", "api_keys", ["org"])
    op.create_table(
        "runs",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("writer_ids", sa.JSON, nullable=False),
        sa.Column("fingerprint", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", name="pk_runs"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_runs_org_orgs"),
    )
    op.create_index("ix_runs_org_project_created_at", "runs", ["org", "project", "created_at"])
    op.create_table(
        "run_writers",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("writer_id", sa.String(256), nullable=False),
        sa.Column("sent", sa.BigInteger, nullable=False),
        sa.Column("reported_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", "writer_id", name="pk_run_writers"),
    )


def downgrade() -> None:
    for table in ("run_writers", "runs", "api_keys", "orgs", "catalog_state"):
        op.drop_table(table)
