"""Compatibility adapters: files attached to runs, chachaml's model versions.

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compat_run_files",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content_type", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", "name", name="pk_compat_run_files"),
    )
    op.create_table(
        "chachaml_model_versions",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("artifact", sa.String(512), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "model", "version", name="pk_chachaml_model_versions"),
    )


def downgrade() -> None:
    op.drop_table("chachaml_model_versions")
    op.drop_table("compat_run_files")
