"""Login attempts become throttle counters (one row per account, address and known place).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 00:33:15.037482

The attempts logged before are not carried over: they only fed the old lockout, and the new
counters start from rest.
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
        "login_throttle",
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.create_index("ix_login_throttle_updated", ["updated"], unique=False)
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempts_addr")
        batch_op.drop_index("ix_login_attempts_user")
    op.drop_table("login_attempts")


def downgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.INTEGER(), nullable=False),
        sa.Column("username", sa.VARCHAR(length=128), nullable=False),
        sa.Column("address", sa.VARCHAR(length=64), nullable=False),
        sa.Column("at", sa.FLOAT(), nullable=False),
        sa.Column("ok", sa.BOOLEAN(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_login_attempts_user", ["username", "at"], unique=False)
        batch_op.create_index("ix_login_attempts_addr", ["address", "at"], unique=False)
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.drop_index("ix_login_throttle_updated")
    op.drop_table("login_throttle")
