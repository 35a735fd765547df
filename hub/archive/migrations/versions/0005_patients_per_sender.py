"""Patients are kept apart per sender where no issuer names them; each study keeps the patient
attributes its own objects gave; each instance keeps its shared (patient, study, series) tags.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 00:45:00

Rows already there keep one patient each (namespace ""), as before. Each study gets the name,
birth date and sex of its patient row and those attributes in its own ``attrs`` (QIDO no longer
merges the patient row into study answers). ``instances.shared`` stays empty for older
instances: the archive then reads those tags from the instance's metadata.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TEXT_DEFAULT = sa.text("''")


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shared", sa.Text(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("namespace", sa.String(), nullable=False, server_default=TEXT_DEFAULT)
        )
        batch_op.drop_constraint("uq_patient", type_="unique")
        batch_op.create_unique_constraint("uq_patient", ["namespace", "patient_id", "issuer"])
    with op.batch_alter_table("studies", schema=None) as batch_op:
        for name in ("patient_name", "patient_name_norm", "patient_birth_date", "patient_sex"):
            batch_op.add_column(
                sa.Column(name, sa.String(), nullable=False, server_default=TEXT_DEFAULT)
            )
        batch_op.create_index("ix_studies_patient_birth_date", ["patient_birth_date"])
        batch_op.create_index("ix_studies_patient_name_norm", ["patient_name_norm"])
    _copy_patient_attributes_to_studies()


def _copy_patient_attributes_to_studies() -> None:
    conn = op.get_bind()
    patients = sa.table(
        "patients",
        sa.column("id"),
        sa.column("patient_name"),
        sa.column("name_norm"),
        sa.column("birth_date"),
        sa.column("sex"),
        sa.column("attrs"),
    )
    studies = sa.table(
        "studies",
        sa.column("id"),
        sa.column("patient_fk"),
        sa.column("attrs"),
        sa.column("patient_name"),
        sa.column("patient_name_norm"),
        sa.column("patient_birth_date"),
        sa.column("patient_sex"),
    )
    p = patients.c
    rows = conn.execute(
        sa.select(
            studies.c.id,
            studies.c.attrs,
            p.patient_name,
            p.name_norm,
            p.birth_date,
            p.sex,
            p.attrs.label("p_attrs"),
        ).select_from(studies.join(patients, studies.c.patient_fk == p.id))
    ).all()
    for row in rows:
        merged = {**json.loads(row.p_attrs or "{}"), **json.loads(row.attrs or "{}")}
        conn.execute(
            studies.update()
            .where(studies.c.id == row.id)
            .values(
                attrs=json.dumps(
                    dict(sorted(merged.items())), separators=(",", ":"), ensure_ascii=False
                ),
                patient_name=row.patient_name,
                patient_name_norm=row.name_norm,
                patient_birth_date=row.birth_date,
                patient_sex=row.sex,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index("ix_studies_patient_name_norm")
        batch_op.drop_index("ix_studies_patient_birth_date")
        for name in ("patient_sex", "patient_birth_date", "patient_name_norm", "patient_name"):
            batch_op.drop_column(name)
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_constraint("uq_patient", type_="unique")
        batch_op.create_unique_constraint("uq_patient", ["patient_id", "issuer"])
        batch_op.drop_column("namespace")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("shared")
