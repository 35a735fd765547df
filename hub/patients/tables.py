"""The log of patient changes in the index: each update and merge with what it replaced."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, String, Table, Text

from hub.archive.index import metadata

# ``patient_fk``: the patient changed, or the survivor of a merge; ``prior_fk``: the patient
# merged into it. ``before``: what a revert puts back (JSON: the patients' corrections, the
# studies moved, the worklist steps' patient columns); ``after``: what the change set.
patient_changes = Table(
    "patient_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(), nullable=False),  # update, merge
    Column("patient_fk", Integer, nullable=True),
    Column("prior_fk", Integer, nullable=True),
    Column("patient_id", String(), nullable=False, default=""),
    Column("issuer", String(), nullable=False, default=""),
    Column("prior_id", String(), nullable=False, default=""),
    Column("prior_issuer", String(), nullable=False, default=""),
    Column("before", Text, nullable=False),
    Column("after", Text, nullable=False),
    Column("who", String(), nullable=False),
    Column("source", String(), nullable=False, default=""),
    Column("message", String(), nullable=False, default=""),  # the HL7 message control ID
    Column("at", Float, nullable=False),
    Column("reverted_at", Float, nullable=True),
    Column("reverted_by", String(), nullable=True),
)
Index("ix_patient_changes_patient_fk", patient_changes.c.patient_fk)
Index("ix_patient_changes_prior_fk", patient_changes.c.prior_fk)
Index("ix_patient_changes_patient_id", patient_changes.c.patient_id)
