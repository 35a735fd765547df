"""Indexes for the queue metrics (forward tasks by when they finished) and for the newest audit
record of an action (the last scheduled backup run).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 15:46:00.298825
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_forward_finished", "forward_tasks", ["finished_at"])
    op.create_index("ix_audit_action", "audit_log", ["action", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_action", table_name="audit_log")
    op.drop_index("ix_forward_finished", table_name="forward_tasks")
