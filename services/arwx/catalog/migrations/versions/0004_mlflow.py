"""The MLflow adapter's state: experiments, runs' params/tags/lifecycle and seq counters,
latest metric values, request digests, artifact paths.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlflow_experiments",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("experiment_id", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("lifecycle_stage", sa.String(16), nullable=False),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_update_time", sa.BigInteger, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("org", "experiment_id", name="pk_mlflow_experiments"),
    )
    op.create_index("ix_mlflow_experiments_org_name", "mlflow_experiments", ["org", "name"], unique=True)
    op.create_table(
        "mlflow_runs",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("experiment_id", sa.BigInteger, nullable=False),
        sa.Column("run_name", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger, nullable=True),
        sa.Column("lifecycle_stage", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("next_seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", name="pk_mlflow_runs"),
    )
    op.create_index("ix_mlflow_runs_org_experiment_id", "mlflow_runs", ["org", "experiment_id"])
    op.create_table(
        "mlflow_latest_metrics",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", "key", name="pk_mlflow_latest_metrics"),
    )
    op.create_table(
        "mlflow_requests",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("digest", sa.String(300), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", "digest", name="pk_mlflow_requests"),
    )
    op.create_table(
        "mlflow_artifacts",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", "path", name="pk_mlflow_artifacts"),
    )


def downgrade() -> None:
    for t in ("mlflow_artifacts", "mlflow_requests", "mlflow_latest_metrics", "mlflow_runs", "mlflow_experiments"):
        op.drop_table(t)
