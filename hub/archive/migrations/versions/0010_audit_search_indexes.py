"""Indexes for searching the audit trail by who, patient, study and time.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 18:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_audit_who": ["who", "seq"],
    "ix_audit_patient": ["patient", "seq"],
    "ix_audit_study": ["study", "seq"],
    "ix_audit_at": ["at"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "audit_log", columns)


def downgrade() -> None:
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="audit_log")
