"""Patients corrected and merged by the hospital's patient administration (HL7 ADT A08, A40):
each patient may carry corrected demographics and the patient it was merged into, and every
change is logged with what it replaced, so that it can be reverted.

Patients indexed before have no correction and stand on their own.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 18:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_patient_changes_patient_fk": ["patient_fk"],
    "ix_patient_changes_prior_fk": ["prior_fk"],
    "ix_patient_changes_patient_id": ["patient_id"],
}


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("corrected", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("merged_into", sa.Integer(), nullable=True))
    op.create_table(
        "patient_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("patient_fk", sa.Integer(), nullable=True),
        sa.Column("prior_fk", sa.Integer(), nullable=True),
        sa.Column("patient_id", sa.String(), nullable=False),
        sa.Column("issuer", sa.String(), nullable=False),
        sa.Column("prior_id", sa.String(), nullable=False),
        sa.Column("prior_issuer", sa.String(), nullable=False),
        sa.Column("before", sa.Text(), nullable=False),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("who", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("reverted_at", sa.Float(), nullable=True),
        sa.Column("reverted_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for name, columns in INDEXES.items():
        op.create_index(name, "patient_changes", columns)


def downgrade() -> None:
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="patient_changes")
    op.drop_table("patient_changes")
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("merged_into")
        batch_op.drop_column("corrected")
