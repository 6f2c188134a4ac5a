"""Wild V2 sweeps and runs: sweeps, runs with commands, runners, the audit trail, run logs;
keys bound to one run (``api_keys.run_id``).

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A key bound to one run (the write key a Wild run's command gets).
    op.add_column("api_keys", sa.Column("run_id", sa.String(256), nullable=True))
    op.create_table(
        "wild_sweeps",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("goal", sa.Text, nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("chat_session_id", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "id", name="pk_wild_sweeps"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_wild_sweeps_org_orgs"),
        sa.UniqueConstraint("org", "name", name="uq_wild_sweeps_org_name"),
    )
    op.create_index("ix_wild_sweeps_org_created_at", "wild_sweeps", ["org", "created_at"])
    op.create_table(
        "wild_runs",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("sweep_id", sa.String(32), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("chat_session_id", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("runner_id", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("stop_requested", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("queued_at", sa.BigInteger, nullable=True),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("ended_at", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("org", "id", name="pk_wild_runs"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_wild_runs_org_orgs"),
        sa.ForeignKeyConstraint(
            ["org", "sweep_id"], ["wild_sweeps.org", "wild_sweeps.id"], name="fk_wild_runs_org_wild_sweeps"
        ),
    )
    op.create_index("ix_wild_runs_org_sweep_id_created_at", "wild_runs", ["org", "sweep_id", "created_at"])
    op.create_index("ix_wild_runs_org_status_queued_at", "wild_runs", ["org", "status", "queued_at"])
    op.create_index("ix_wild_runs_status_runner_id", "wild_runs", ["status", "runner_id"])
    op.create_table(
        "wild_runners",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("last_heartbeat_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "id", name="pk_wild_runners"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_wild_runners_org_orgs"),
    )
    op.create_table(
        "wild_audit",
        sa.Column("seq", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("sweep_id", sa.String(32), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("chat_session_id", sa.Text, nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_wild_audit"),
    )
    op.create_index("ix_wild_audit_org_run_id_seq", "wild_audit", ["org", "run_id", "seq"])
    op.create_index("ix_wild_audit_org_sweep_id_seq", "wild_audit", ["org", "sweep_id", "seq"])
    op.create_table(
        "wild_run_logs",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("pos", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("org", "run_id", "stream", "pos", name="pk_wild_run_logs"),
    )


def downgrade() -> None:
    for table in ("wild_run_logs", "wild_audit", "wild_runners", "wild_runs", "wild_sweeps"):
        op.drop_table(table)
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("run_id")
