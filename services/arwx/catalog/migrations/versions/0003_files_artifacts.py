"""Files (external or uploaded) and artifacts: versions, refs and the log of ref moves.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

_ARTIFACT = ["artifacts.org", "artifacts.project", "artifacts.name"]


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("file_id", sa.String(40), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("uri", sa.Text, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("org", "file_id", name="pk_files"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_files_org_orgs"),
    )
    op.create_index("ix_files_org_sha256", "files", ["org", "sha256"])
    op.create_table(
        "artifacts",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", "project", "name", name="pk_artifacts"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_artifacts_org_orgs"),
    )
    op.create_index("ix_artifacts_org_name", "artifacts", ["org", "name"])
    op.create_index("ix_artifacts_org_type", "artifacts", ["org", "type"])
    op.create_table(
        "artifact_versions",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("manifest", sa.JSON, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("produced_by", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("org", "project", "name", "version", name="pk_artifact_versions"),
        sa.ForeignKeyConstraint(["org", "project", "name"], _ARTIFACT, name="fk_artifact_versions_org_artifacts"),
        sa.UniqueConstraint("org", "project", "name", "digest", name="uq_artifact_versions_org_project_name_digest"),
    )
    op.create_index("ix_artifact_versions_org_produced_by", "artifact_versions", ["org", "produced_by"])
    op.create_table(
        "artifact_refs",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("ref", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("org", "project", "name", "ref", name="pk_artifact_refs"),
        sa.ForeignKeyConstraint(["org", "project", "name"], _ARTIFACT, name="fk_artifact_refs_org_artifacts"),
    )
    op.create_table(
        "artifact_ref_log",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("ref", sa.String(128), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("moved_at", sa.BigInteger, nullable=False),
        sa.Column("moved_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_artifact_ref_log"),
    )
    op.create_index("ix_artifact_ref_log_org_project_name_id", "artifact_ref_log", ["org", "project", "name", "id"])


def downgrade() -> None:
    for table in ("artifact_ref_log", "artifact_refs", "artifact_versions", "artifacts", "files"):
        op.drop_table(table)
