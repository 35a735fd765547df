"""Conversion jobs keep the warnings of their output (an assumed pixel spacing, say).

Jobs finished before have none recorded: they start with an empty list.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:14:38.611923
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("warnings", sa.Text(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("warnings")
