"""Accounts and sign-in: users, their memberships in organizations, login sessions, one-time password tokens.

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "memberships",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "org", name="pk_memberships"),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], name="fk_memberships_user_id_users"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_memberships_org_orgs"),
    )
    op.create_index("ix_memberships_org", "memberships", ["org"])
    op.create_table(
        "login_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_login_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], name="fk_login_sessions_user_id_users"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_login_sessions_org_orgs"),
    )
    op.create_index("ix_login_sessions_user_id", "login_sessions", ["user_id"])
    op.create_index("ix_login_sessions_expires_at", "login_sessions", ["expires_at"])
    op.create_table(
        "password_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("used_at", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_password_tokens"),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], name="fk_password_tokens_user_id_users"),
        sa.ForeignKeyConstraint(["org"], ["orgs.org"], name="fk_password_tokens_org_orgs"),
    )


def downgrade() -> None:
    for table in ("password_tokens", "login_sessions", "memberships", "users"):
        op.drop_table(table)
