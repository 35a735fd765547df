"""An account's password may be a one-time one (generated when the account was made, or by a
reset): the next sign-in must replace it before the session may do anything else.

Passwords set before are the accounts' own.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 14:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("password_temporary", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_temporary")
