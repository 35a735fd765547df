"""The dose registry's tables in the index.

An event is one irradiation, keyed by its Irradiation Event UID, whichever report carried it
first; a study's dose is the union of its events over every report of that study. A patient
identity is a person as far as the registry can tell: a PatientID within its issuer whose
demographics agree.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hub.archive.index import metadata

dose_identities = Table(
    "dose_identities",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_id", String(), nullable=False, default=""),
    Column("issuer", String(), nullable=False, default=""),
    Column("patient_name", String(), nullable=False, default=""),
    Column("name_norm", String(), nullable=False, default=""),
    Column("birth_date", String(), nullable=False, default=""),
    Column("sex", String(), nullable=False, default=""),
    # another identity holds the same PatientID and issuer with other demographics
    Column("review", Boolean, nullable=False, default=False),
    Column("review_reason", Text, nullable=False, default=""),
    # a QA or phantom subject: kept, never in a patient's profile
    Column("excluded", Boolean, nullable=False, default=False),
    Column("excluded_reason", Text, nullable=False, default=""),
    # linked by an administrator into another identity: this one is no longer shown
    Column("merged_into", ForeignKey("dose_identities.id"), nullable=True),
    Column("created_at", Float, nullable=False),
)
Index("ix_dose_identities_key", dose_identities.c.patient_id, dose_identities.c.issuer)

dose_reports = Table(
    "dose_reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sop_uid", String(), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("study_uid", String(), nullable=False),
    Column("identity_fk", ForeignKey("dose_identities.id"), nullable=False),
    Column("study_date", String(), nullable=False, default=""),
    Column("study_description", String(), nullable=False, default=""),
    Column("age_years", Float, nullable=True),
    Column("age_source", String(), nullable=False, default=""),
    Column("accumulated_dlp", Float, nullable=True),  # as the report states it, mGy.cm
    Column("num_events", Integer, nullable=False, default=0),  # events it carries
    Column("warning", Text, nullable=False, default=""),  # why no events were read
    Column("recorded_at", Float, nullable=False),
    UniqueConstraint("sop_uid", "sha256", name="uq_dose_report"),
)
Index("ix_dose_reports_study", dose_reports.c.study_uid)

dose_events = Table(
    "dose_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_uid", String(), nullable=False, unique=True),
    Column("study_uid", String(), nullable=False),
    Column("report_fk", ForeignKey("dose_reports.id"), nullable=False),
    Column("identity_fk", ForeignKey("dose_identities.id"), nullable=False),
    Column("event_date", String(), nullable=False, default=""),
    Column("region_scheme", String(), nullable=False, default=""),
    Column("region_code", String(), nullable=False, default=""),
    Column("region_meaning", String(), nullable=False, default=""),
    Column("protocol", String(), nullable=False, default=""),
    Column("acquisition_type", String(), nullable=False, default=""),
    Column("phantom", String(), nullable=False, default=""),  # CID 4052 code value
    Column("ctdivol", Float, nullable=True),  # mGy
    Column("dlp", Float, nullable=True),  # mGy.cm
    Column("scanner_e", Float, nullable=True),  # mSv, when the scanner reported one
)
Index("ix_dose_events_study", dose_events.c.study_uid)
Index("ix_dose_events_identity", dose_events.c.identity_fk)

dose_estimates = Table(
    "dose_estimates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_fk", ForeignKey("dose_events.id"), nullable=False),
    Column("table_id", String(), nullable=False),
    Column("age_column", String(), nullable=False),  # newborn, 1y, 5y, 10y, adult, adult_icrp103
    Column("region_row", String(), nullable=False),
    Column("region_source", String(), nullable=False),
    Column("k", Float, nullable=False),  # mSv/(mGy.cm)
    Column("dlp", Float, nullable=False),
    Column("e_msv", Float, nullable=False),
    Column("flags", Text, nullable=False, default=""),  # comma-separated
    Column("computed_at", Float, nullable=False),
    UniqueConstraint("event_fk", "table_id", "age_column", name="uq_dose_estimate"),
)
Index("ix_dose_estimates_event", dose_estimates.c.event_fk)
