"""The dose registry: patient identities, dose reports, irradiation events and their estimates.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 03:55:54.703229
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dose_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(), nullable=False),
        sa.Column("issuer", sa.String(), nullable=False),
        sa.Column("patient_name", sa.String(), nullable=False),
        sa.Column("name_norm", sa.String(), nullable=False),
        sa.Column("birth_date", sa.String(), nullable=False),
        sa.Column("sex", sa.String(), nullable=False),
        sa.Column("review", sa.Boolean(), nullable=False),
        sa.Column("review_reason", sa.Text(), nullable=False),
        sa.Column("excluded", sa.Boolean(), nullable=False),
        sa.Column("excluded_reason", sa.Text(), nullable=False),
        sa.Column("merged_into", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merged_into"],
            ["dose_identities.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dose_identities", schema=None) as batch_op:
        batch_op.create_index("ix_dose_identities_key", ["patient_id", "issuer"], unique=False)

    op.create_table(
        "dose_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_uid", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(), nullable=False),
        sa.Column("identity_fk", sa.Integer(), nullable=False),
        sa.Column("study_date", sa.String(), nullable=False),
        sa.Column("study_description", sa.String(), nullable=False),
        sa.Column("age_years", sa.Float(), nullable=True),
        sa.Column("age_source", sa.String(), nullable=False),
        sa.Column("accumulated_dlp", sa.Float(), nullable=True),
        sa.Column("num_events", sa.Integer(), nullable=False),
        sa.Column("warning", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_fk"],
            ["dose_identities.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sop_uid", "sha256", name="uq_dose_report"),
    )
    with op.batch_alter_table("dose_reports", schema=None) as batch_op:
        batch_op.create_index("ix_dose_reports_study", ["study_uid"], unique=False)

    op.create_table(
        "dose_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_uid", sa.String(), nullable=False),
        sa.Column("study_uid", sa.String(), nullable=False),
        sa.Column("report_fk", sa.Integer(), nullable=False),
        sa.Column("identity_fk", sa.Integer(), nullable=False),
        sa.Column("event_date", sa.String(), nullable=False),
        sa.Column("region_scheme", sa.String(), nullable=False),
        sa.Column("region_code", sa.String(), nullable=False),
        sa.Column("region_meaning", sa.String(), nullable=False),
        sa.Column("protocol", sa.String(), nullable=False),
        sa.Column("acquisition_type", sa.String(), nullable=False),
        sa.Column("phantom", sa.String(), nullable=False),
        sa.Column("ctdivol", sa.Float(), nullable=True),
        sa.Column("dlp", sa.Float(), nullable=True),
        sa.Column("scanner_e", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["identity_fk"],
            ["dose_identities.id"],
        ),
        sa.ForeignKeyConstraint(
            ["report_fk"],
            ["dose_reports.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_uid"),
    )
    with op.batch_alter_table("dose_events", schema=None) as batch_op:
        batch_op.create_index("ix_dose_events_identity", ["identity_fk"], unique=False)
        batch_op.create_index("ix_dose_events_study", ["study_uid"], unique=False)

    op.create_table(
        "dose_estimates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_fk", sa.Integer(), nullable=False),
        sa.Column("table_id", sa.String(), nullable=False),
        sa.Column("age_column", sa.String(), nullable=False),
        sa.Column("region_row", sa.String(), nullable=False),
        sa.Column("region_source", sa.String(), nullable=False),
        sa.Column("k", sa.Float(), nullable=False),
        sa.Column("dlp", sa.Float(), nullable=False),
        sa.Column("e_msv", sa.Float(), nullable=False),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column("computed_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_fk"],
            ["dose_events.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_fk", "table_id", "age_column", name="uq_dose_estimate"),
    )
    with op.batch_alter_table("dose_estimates", schema=None) as batch_op:
        batch_op.create_index("ix_dose_estimates_event", ["event_fk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dose_estimates", schema=None) as batch_op:
        batch_op.drop_index("ix_dose_estimates_event")

    op.drop_table("dose_estimates")
    with op.batch_alter_table("dose_events", schema=None) as batch_op:
        batch_op.drop_index("ix_dose_events_study")
        batch_op.drop_index("ix_dose_events_identity")

    op.drop_table("dose_events")
    with op.batch_alter_table("dose_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_dose_reports_study")

    op.drop_table("dose_reports")
    with op.batch_alter_table("dose_identities", schema=None) as batch_op:
        batch_op.drop_index("ix_dose_identities_key")

    op.drop_table("dose_identities")
