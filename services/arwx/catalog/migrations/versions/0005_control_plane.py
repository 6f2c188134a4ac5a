"""The control plane: projects and goals, sessions, experiments, decisions, idempotency keys.

Projects that runs implied before this migration become rows (no goal yet).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("objective_metric", sa.Text, nullable=True),
        sa.Column("lower_is_better", sa.Boolean, nullable=False),
        sa.Column("target", sa.Float, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "name", name="pk_projects"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_projects_org_orgs"),
    )
    # Run project names were not length-checked before the API capped them at 128.
    op.execute(
        "INSERT INTO projects (org, name, objective_metric, lower_is_better, target, created_at, updated_at)"
        " SELECT org, project, NULL, TRUE, NULL, MIN(created_at), MIN(created_at) FROM runs"
        " WHERE LENGTH(project) <= 128 GROUP BY org, project"
    )
    op.create_table(
        "sessions",
        sa.Column("seq", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("tag", sa.Text, nullable=False),
        sa.Column("branch", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_sessions"),
        sa.ForeignKeyConstraint(["org", "project"], ["projects.org", "projects.name"], name="fk_sessions_org_projects"),
        sa.UniqueConstraint("org", "id", name="uq_sessions_org_id"),
    )
    op.create_index("ix_sessions_org_project_seq", "sessions", ["org", "project", "seq"])
    op.create_table(
        "experiments",
        sa.Column("seq", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("commit", sa.String(128), nullable=True),
        sa.Column("parent_commit", sa.String(128), nullable=True),
        sa.Column("diff_sha", sa.String(64), nullable=True),
        sa.Column("diff_size", sa.BigInteger, nullable=False),
        sa.Column("diff_truncated", sa.Boolean, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("repro_key", sa.String(64), nullable=False),
        sa.Column("tree", sa.JSON, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_experiments"),
        sa.ForeignKeyConstraint(
            ["org", "session_id"], ["sessions.org", "sessions.id"], name="fk_experiments_org_sessions"
        ),
        sa.UniqueConstraint("org", "id", name="uq_experiments_org_id"),
    )
    op.create_index("ix_experiments_org_project_seq", "experiments", ["org", "project", "seq"])
    op.create_index("ix_experiments_org_session_id_seq", "experiments", ["org", "session_id", "seq"])
    op.create_table(
        "decisions",
        sa.Column("seq", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("experiment_id", sa.String(32), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("metric", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_decisions"),
        sa.ForeignKeyConstraint(
            ["org", "experiment_id"], ["experiments.org", "experiments.id"], name="fk_decisions_org_experiments"
        ),
    )
    op.create_index("ix_decisions_org_experiment_id_seq", "decisions", ["org", "experiment_id", "seq"])
    op.create_index("ix_decisions_org_project_seq", "decisions", ["org", "project", "seq"])
    op.create_table(
        "idempotency_keys",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "key", name="pk_idempotency_keys"),
    )


def downgrade() -> None:
    for table in ("idempotency_keys", "decisions", "experiments", "sessions", "projects"):
        op.drop_table(table)
