"""Each allow-list entry has a version, moved by every change, and says who changed it last and
when, so that two administrators editing one entry cannot overwrite each other unseen.

Entries made before start at version 1, changed by nobody known.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 14:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ae_permissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("updated_at", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("updated_by", sa.String(length=128), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("ae_permissions", schema=None) as batch_op:
        batch_op.drop_column("updated_by")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("version")
