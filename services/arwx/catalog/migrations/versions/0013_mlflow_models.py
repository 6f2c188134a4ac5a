"""The MLflow adapter's logged models and model registry (registered models, versions).

Revision ID: 0013
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mlflow_runs") as batch:
        batch.add_column(sa.Column("outputs", sa.JSON, nullable=True))
    op.create_table(
        "mlflow_logged_models",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("experiment_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("model_type", sa.Text, nullable=True),
        sa.Column("source_run_id", sa.String(256), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("lifecycle_stage", sa.String(16), nullable=False),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_update_time", sa.BigInteger, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("org", "model_id", name="pk_mlflow_logged_models"),
    )
    op.create_index("ix_mlflow_logged_models_org_experiment_id", "mlflow_logged_models", ["org", "experiment_id"])
    op.create_table(
        "mlflow_registered_models",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("artifact", sa.String(256), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_update_time", sa.BigInteger, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("aliases", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("org", "name", name="pk_mlflow_registered_models"),
    )
    op.create_table(
        "mlflow_model_versions",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("storage_location", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(256), nullable=True),
        sa.Column("model_id", sa.String(64), nullable=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("current_stage", sa.String(32), nullable=False),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_update_time", sa.BigInteger, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("arwx_version", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("org", "name", "version", name="pk_mlflow_model_versions"),
    )


def downgrade() -> None:
    with op.batch_alter_table("mlflow_runs") as batch:
        batch.drop_column("outputs")
    op.drop_table("mlflow_model_versions")
    op.drop_table("mlflow_registered_models")
    op.drop_index("ix_mlflow_logged_models_org_experiment_id", table_name="mlflow_logged_models")
    op.drop_table("mlflow_logged_models")
