"""Patients resolved, not assumed: a PatientID within its issuer, checked against the birth
date, sex and name the report gives.

A report whose demographics disagree with every identity holding its PatientID and issuer
gets a new identity flagged for review; nothing is merged silently. QA and phantom subjects
(QualityControlSubject YES, or a name or ID matching the configured patterns) are kept apart
as excluded identities.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from pydicom import Dataset
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.dose.settings import DoseSettings
from hub.dose.tables import dose_identities

DEFINITE_SEXES = frozenset({"M", "F"})


@dataclass(frozen=True)
class Demographics:
    patient_id: str
    issuer: str
    name: str
    birth_date: str
    sex: str
    quality_control: bool

    @property
    def name_norm(self) -> str:
        return normalise_name(self.name)


def demographics(ds: Dataset) -> Demographics:
    def text(keyword: str) -> str:
        return str(ds.get(keyword, "") or "").strip()

    return Demographics(
        patient_id=text("PatientID"),
        issuer=text("IssuerOfPatientID"),
        name=text("PatientName"),
        birth_date=text("PatientBirthDate"),
        sex=text("PatientSex").upper(),
        quality_control=text("QualityControlSubject").upper() == "YES",
    )


def normalise_name(name: str) -> str:
    """Upper case, name components and spaces collapsed: ``Smith^John`` == ``SMITH^JOHN ``."""
    parts = [" ".join(p.split()) for p in name.upper().split("=")[0].split("^")]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def disagreements(row, d: Demographics) -> list[str]:
    """What the identity ``row`` and the demographics both give, and give differently."""
    found = []
    if row.birth_date and d.birth_date and row.birth_date != d.birth_date:
        found.append("birth date")
    if row.sex in DEFINITE_SEXES and d.sex in DEFINITE_SEXES and row.sex != d.sex:
        found.append("sex")
    if row.name_norm and d.name_norm and row.name_norm != d.name_norm:
        found.append("name")
    return found


def exclusion(d: Demographics, settings: DoseSettings) -> str:
    """Why the subject is a QA or phantom subject; "" for a patient."""
    if d.quality_control:
        return "QualityControlSubject is YES"
    name = d.name.replace("^", " ")
    for pattern in settings.qa_name_patterns:
        if re.search(pattern, name, re.IGNORECASE):
            return f"name matches {pattern}"
    for pattern in settings.qa_id_patterns:
        if re.search(pattern, d.patient_id, re.IGNORECASE):
            return f"PatientID matches {pattern}"
    return ""


async def resolve(conn: AsyncConnection, d: Demographics, settings: DoseSettings) -> int:
    """The identity the demographics belong to, made when none agrees."""
    holders = (
        await conn.execute(
            select(dose_identities)
            .where(
                dose_identities.c.patient_id == d.patient_id, dose_identities.c.issuer == d.issuer
            )
            .order_by(dose_identities.c.id)
        )
    ).all()
    review_reason = ""
    if d.patient_id:
        for row in holders:
            if not disagreements(row, d):
                return row.id
        if holders:
            differ = sorted({what for row in holders for what in disagreements(row, d)})
            review_reason = (
                f"PatientID {d.patient_id!r} is held by identity {holders[0].id} "
                f"with a different {' and '.join(differ)}"
            )
    else:
        review_reason = "no PatientID"
    excluded = exclusion(d, settings)
    result = await conn.execute(
        insert(dose_identities).values(
            patient_id=d.patient_id,
            issuer=d.issuer,
            patient_name=d.name,
            name_norm=d.name_norm,
            birth_date=d.birth_date,
            sex=d.sex,
            review=bool(review_reason),
            review_reason=review_reason,
            excluded=bool(excluded),
            excluded_reason=excluded,
            created_at=time.time(),
        )
    )
    return result.inserted_primary_key[0]
