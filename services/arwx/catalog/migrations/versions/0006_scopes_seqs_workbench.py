"""Key scopes; seqs reserved per (run, writer) for every adapter; the ml-workbench adapter's rows.

- ``api_keys.scopes``: keys made before scopes existed keep what they could do
  (``read write admin``); ``launch`` is granted only explicitly.
- ``writer_seqs`` / ``writer_requests`` (``arwx/ingest/reserved_seqs.py``)
  replace ``mlflow_runs.next_seq`` and ``mlflow_requests``: their rows are
  copied under the writer ``mlflow`` (the MLflow adapter's writer id), then
  the old column and table are dropped, so MLflow runs logged before keep
  their seqs and a retried request still gets the seqs it had.
- ``workbench_experiments`` / ``workbench_artifacts``
  (``arwx/compat/workbench/state.py``).

Revision ID: 0006
Revises: 0013
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("scopes", sa.String(128), nullable=False, server_default="read write admin"))
    with op.batch_alter_table("api_keys") as batch:
        # Every new key names its scopes; the default was only for the keys that existed.
        batch.alter_column("scopes", existing_type=sa.String(128), existing_nullable=False, server_default=None)

    op.create_table(
        "writer_seqs",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("writer_id", sa.String(256), nullable=False),
        sa.Column("next_seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", "writer_id", name="pk_writer_seqs"),
    )
    op.create_table(
        "writer_requests",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("writer_id", sa.String(256), nullable=False),
        sa.Column("digest", sa.String(300), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", "writer_id", "digest", name="pk_writer_requests"),
    )
    op.execute(
        "INSERT INTO writer_seqs (org, run_id, writer_id, next_seq) "
        "SELECT org, run_id, 'mlflow', next_seq FROM mlflow_runs"
    )
    op.execute(
        "INSERT INTO writer_requests (org, run_id, writer_id, digest, first_seq, n) "
        "SELECT org, run_id, 'mlflow', digest, first_seq, n FROM mlflow_requests"
    )
    op.drop_table("mlflow_requests")
    with op.batch_alter_table("mlflow_runs") as batch:
        batch.drop_column("next_seq")

    op.create_table(
        "workbench_experiments",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False),
        sa.Column("is_public", sa.Boolean, nullable=False),
        sa.Column("shared_with", sa.JSON, nullable=False),
        sa.Column("run_id", sa.String(256), nullable=True),
        sa.Column("extra", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("org", "id", name="pk_workbench_experiments"),
    )
    op.create_index("ix_workbench_experiments_org_name", "workbench_experiments", ["org", "name"])
    op.create_index(
        "ix_workbench_experiments_org_project", "workbench_experiments", ["org", "project"], unique=True
    )
    op.create_table(
        "workbench_artifacts",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("experiment_id", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("s3_key", sa.Text, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("content_type", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "experiment_id", "path", name="pk_workbench_artifacts"),
    )


def downgrade() -> None:
    op.drop_table("workbench_artifacts")
    op.drop_table("workbench_experiments")
    with op.batch_alter_table("mlflow_runs") as batch:
        batch.add_column(sa.Column("next_seq", sa.BigInteger, nullable=False, server_default="0"))
    op.create_table(
        "mlflow_requests",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("digest", sa.String(300), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", "digest", name="pk_mlflow_requests"),
    )
    op.execute(
        "UPDATE mlflow_runs SET next_seq = (SELECT s.next_seq FROM writer_seqs s WHERE s.org = mlflow_runs.org "
        "AND s.run_id = mlflow_runs.run_id AND s.writer_id = 'mlflow') WHERE EXISTS (SELECT 1 FROM writer_seqs s "
        "WHERE s.org = mlflow_runs.org AND s.run_id = mlflow_runs.run_id AND s.writer_id = 'mlflow')"
    )
    op.execute(
        "INSERT INTO mlflow_requests (org, run_id, digest, first_seq, n) "
        "SELECT org, run_id, digest, first_seq, n FROM writer_requests WHERE writer_id = 'mlflow'"
    )
    op.drop_table("writer_requests")
    op.drop_table("writer_seqs")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scopes")
