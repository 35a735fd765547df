"""The forward queue table, part of the archive index (``hub.archive.index.metadata``).

One row per (stored instance, target). Rows are written in the same transaction that indexes
the instance, so a stored instance always has its forwards queued.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, String, Table, Text

from hub.archive.index import metadata
from hub.forward.states import STATES, TaskState

__all__ = ["STATES", "TaskState", "forward_tasks"]

forward_tasks = Table(
    "forward_tasks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("target", String(64), nullable=False),
    Column("rule", String(64), nullable=False, default=""),
    Column("sop_uid", String(64), nullable=False),
    Column("sop_class_uid", String(64), nullable=False, default=""),
    Column("study_uid", String(64), nullable=False, default=""),
    Column("series_uid", String(64), nullable=False, default=""),
    Column("modality", String(16), nullable=False, default=""),
    Column("sha256", String(64), nullable=False),
    Column("state", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_status", Integer, nullable=True),  # DIMSE status or HTTP status of the last try
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    # while in flight: the node sending it, and until when its claim holds without renewal
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
)
Index(
    "ix_forward_due",
    forward_tasks.c.state,
    forward_tasks.c.target,
    forward_tasks.c.next_attempt_at,
)
Index("ix_forward_sop", forward_tasks.c.sop_uid)
Index("ix_forward_finished", forward_tasks.c.finished_at)  # the queue metrics' window
