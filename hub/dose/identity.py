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
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.config import DoseSettings
from hub.dose.tables import dose_events, dose_identities, dose_reports

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
                return await _current(conn, row.id, row.merged_into)
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


async def _current(conn: AsyncConnection, identity_id: int, merged_into: int | None) -> int:
    """The identity that holds ``identity_id``'s records now (after links)."""
    seen = {identity_id}
    while merged_into is not None and merged_into not in seen:
        identity_id = merged_into
        seen.add(identity_id)
        merged_into = (
            await conn.execute(
                select(dose_identities.c.merged_into).where(dose_identities.c.id == identity_id)
            )
        ).scalar()
    return identity_id


class IdentityError(ValueError):
    """A link or split that cannot be done; ``status``: the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _live(conn: AsyncConnection, identity_id: int):
    row = (
        await conn.execute(select(dose_identities).where(dose_identities.c.id == identity_id))
    ).first()
    if row is None:
        raise IdentityError(404, f"no such patient identity {identity_id}")
    if row.merged_into is not None:
        raise IdentityError(409, f"identity {identity_id} is linked into {row.merged_into}")
    return row


async def link(engine: AsyncEngine, source_id: int, target_id: int):
    """Move every record of ``source_id`` to ``target_id``: one person after all. Returns the
    source's row as it was."""
    if source_id == target_id:
        raise IdentityError(400, "an identity cannot be linked into itself")
    async with engine.begin() as conn:
        source = await _live(conn, source_id)
        await _live(conn, target_id)
        for table in (dose_reports, dose_events):
            await conn.execute(
                update(table).where(table.c.identity_fk == source_id).values(identity_fk=target_id)
            )
        await conn.execute(
            update(dose_identities)
            .where(dose_identities.c.id == source_id)
            .values(merged_into=target_id, review=False)
        )
        await conn.execute(
            update(dose_identities).where(dose_identities.c.id == target_id).values(review=False)
        )
    return source


async def split(engine: AsyncEngine, identity_id: int, study_uids: list[str]) -> int:
    """Move the named studies of ``identity_id`` to a new identity with the same details,
    flagged for review; returns its id."""
    if not study_uids:
        raise IdentityError(400, "name the studies to split off")
    async with engine.begin() as conn:
        row = await _live(conn, identity_id)
        held = set(
            (
                await conn.execute(
                    select(dose_reports.c.study_uid).where(
                        dose_reports.c.identity_fk == identity_id,
                        dose_reports.c.study_uid.in_(study_uids),
                    )
                )
            ).scalars()
        )
        if missing := sorted(set(study_uids) - held):
            raise IdentityError(400, f"not studies of identity {identity_id}: {', '.join(missing)}")
        new_id = (
            await conn.execute(
                insert(dose_identities).values(
                    patient_id=row.patient_id,
                    issuer=row.issuer,
                    patient_name=row.patient_name,
                    name_norm=row.name_norm,
                    birth_date=row.birth_date,
                    sex=row.sex,
                    review=True,
                    review_reason=f"split from identity {identity_id} by an administrator",
                    excluded=row.excluded,
                    excluded_reason=row.excluded_reason,
                    created_at=time.time(),
                )
            )
        ).inserted_primary_key[0]
        for table in (dose_reports, dose_events):
            await conn.execute(
                update(table)
                .where(table.c.identity_fk == identity_id, table.c.study_uid.in_(study_uids))
                .values(identity_fk=new_id)
            )
    return new_id
