"""Index tables for resumable uploads and background jobs.

They live in the archive's ``metadata``, so the index's migrations (``hub.archive.migrations``)
create and change them with the rest of the index.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text

from hub.archive.index import metadata

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("filename", String(), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),  # slide | dicom (decided when complete)
    Column("status", String(16), nullable=False),  # receiving | complete | consumed | discarded
    Column("fields", Text, nullable=False, default="{}"),  # patient/accession/specimen ids (JSON)
    Column("actor", String(128), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # convert | ingest
    Column("upload_id", String(32), nullable=True),
    Column("filename", String(), nullable=False, default=""),
    Column("status", String(16), nullable=False),  # queued | running | ingesting | done | failed
    Column("percent", Float, nullable=False, default=0.0),
    Column("frames_done", Integer, nullable=False, default=0),
    Column("frames_total", Integer, nullable=False, default=0),
    Column("eta_seconds", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("study_uid", String(64), nullable=True),
    Column("series_uids", Text, nullable=False, default="[]"),  # JSON list
    # what the conversion assumed and says so in its output (e.g. a fallback pixel spacing)
    Column("warnings", Text, nullable=False, default="[]"),  # JSON list
    Column("instances", Integer, nullable=False, default=0),
    Column("actor", String(128), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    # while active: the node running it, and until when its claim holds without renewal
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
)
Index("ix_jobs_status", jobs.c.status)
Index("ix_jobs_upload", jobs.c.upload_id)
