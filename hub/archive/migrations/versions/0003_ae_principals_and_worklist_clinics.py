"""AE allow-list entries act as principals; worklist items are assigned to clinics.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 00:14:52.642917

Entries made before this revision allowed their services with unrestricted reads. They keep
exactly that, as AE-only principals ("ae:<title>") with the admin role's read scope, limited as
before by their per-service flags; `tessera ae allow ... --as USER | --role ROLE` narrows them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ae_permissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("principal", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("role", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("address", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("certificate", sa.String(), nullable=True))
    op.execute(
        "UPDATE ae_permissions SET principal = 'ae:' || ae_title, role = 'admin'"
        " WHERE principal IS NULL"
    )
    with op.batch_alter_table("ae_permissions", schema=None) as batch_op:
        batch_op.alter_column("principal", existing_type=sa.String(length=128), nullable=False)

    with op.batch_alter_table("worklist_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clinic", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("created_by", sa.String(length=128), nullable=True))
        batch_op.create_index("ix_worklist_clinic", ["clinic"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("worklist_items", schema=None) as batch_op:
        batch_op.drop_index("ix_worklist_clinic")
        batch_op.drop_column("created_by")
        batch_op.drop_column("clinic")

    with op.batch_alter_table("ae_permissions", schema=None) as batch_op:
        batch_op.drop_column("certificate")
        batch_op.drop_column("address")
        batch_op.drop_column("role")
        batch_op.drop_column("principal")
