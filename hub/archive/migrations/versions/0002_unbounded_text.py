"""Text columns from received objects are unbounded on PostgreSQL too.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

An index made on PostgreSQL before the text columns became unbounded has them as
``VARCHAR(n)``, and PostgreSQL refused objects whose values exceed n (SQLite stores them
whatever the declared length). Such columns become ``VARCHAR``; PostgreSQL changes the type
without rewriting the table. Columns already unbounded are left alone, and SQLite, which does
not enforce lengths, is not touched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UNBOUNDED: dict[str, tuple[str, ...]] = {
    "patients": ("patient_id", "issuer", "patient_name", "name_norm", "birth_date", "sex"),
    "studies": (
        "study_uid",
        "study_date",
        "study_time",
        "study_dt",
        "accession",
        "study_id",
        "description",
        "referring",
        "referring_norm",
        "modalities",
    ),
    "series": (
        "series_uid",
        "modality",
        "description",
        "pps_start_date",
        "pps_start_time",
        "first_time",
    ),
    "instances": (
        "sop_uid",
        "sop_class_uid",
        "sort_time",
        "transfer_syntax",
        "image_type",
        "pixel_spacing",
        "container_id",
        "door",
        "actor",
    ),
    "conflicts": ("study_uid", "sop_uid", "kept_patient_id", "offered_patient_id", "door"),
    "uploads": ("filename",),
    "jobs": ("filename",),
    "tokens": ("label",),
    "audit_log": ("patient", "study", "source"),
    "ae_permissions": ("note",),
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    inspector = sa.inspect(bind)
    for table, names in UNBOUNDED.items():
        columns = {c["name"]: c for c in inspector.get_columns(table)}
        for name in names:
            column = columns[name]
            if getattr(column["type"], "length", None) is None:
                continue
            op.alter_column(
                table,
                name,
                type_=sa.String(),
                existing_type=column["type"],
                existing_nullable=column["nullable"],
            )


def downgrade() -> None:
    # The bounded types refused valid objects, and stored values may no longer fit them.
    pass
