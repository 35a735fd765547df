"""What the index already holds of an incoming object, in one query.

The current instance with the same SOP Instance UID (duplicate check), the study with its
patient (the object must name the same patient) and the series with its study (the object
must name the same study). One statement instead of three: with the SQLite driver each
statement is several thread hops, the largest part of ingesting a small object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.archive.index import instances, patients, series, studies
from hub.archive.parse import ParsedInstance

KnownRow = tuple[int, str]  # (id, attrs JSON) of an index row

_current = instances.alias("current")
_study = studies.alias("known_study")
_patient = patients.alias("known_patient")
_series = series.alias("known_series")
_series_study = studies.alias("series_study")
_one = select(literal(1).label("one")).subquery("one")

_current_series = series.alias("current_series")

KNOWN = select(
    _current.c.sha256.label("current_sha256"),
    _current.c.version.label("current_version"),
    _current.c.actor.label("current_actor"),
    _current_series.c.modality.label("current_modality"),
    _study.c.id.label("study_id"),
    _study.c.attrs.label("study_attrs"),
    _patient.c.id.label("patient_fk"),
    _patient.c.patient_id,
    _patient.c.issuer,
    _patient.c.attrs.label("patient_attrs"),
    _series.c.id.label("series_id"),
    _series.c.attrs.label("series_attrs"),
    _series_study.c.study_uid.label("series_study_uid"),
).select_from(
    _one.outerjoin(
        _current,
        (_current.c.sop_uid == bindparam("sop_uid")) & _current.c.is_current.is_(True),
    )
    .outerjoin(_current_series, _current_series.c.id == _current.c.series_fk)
    .outerjoin(_study, _study.c.study_uid == bindparam("study_uid"))
    .outerjoin(_patient, _patient.c.id == _study.c.patient_fk)
    .outerjoin(_series, _series.c.series_uid == bindparam("series_uid"))
    .outerjoin(_series_study, _series_study.c.id == _series.c.study_fk)
)


@dataclass(frozen=True)
class Known:
    """The index rows an incoming object meets (None: not there yet)."""

    current: tuple[str, int] | None  # (sha256, version) of the current instance
    current_owner: tuple[str | None, str] | None  # (actor, modality) of the current instance
    patient_key: tuple[str, str] | None  # (patient_id, issuer) of the study's patient
    patient: KnownRow | None
    study: KnownRow | None
    series: KnownRow | None
    series_study_uid: str | None


async def lookup(conn: AsyncConnection, p: ParsedInstance) -> Known:
    row: Any = (
        await conn.execute(
            KNOWN, {"sop_uid": p.sop_uid, "study_uid": p.study_uid, "series_uid": p.series_uid}
        )
    ).first()
    has_study, has_series = row.study_id is not None, row.series_id is not None
    return Known(
        current=(row.current_sha256, row.current_version) if row.current_sha256 else None,
        current_owner=(row.current_actor, row.current_modality) if row.current_sha256 else None,
        patient_key=(row.patient_id, row.issuer) if has_study else None,
        patient=(row.patient_fk, row.patient_attrs) if has_study else None,
        study=(row.study_id, row.study_attrs) if has_study else None,
        series=(row.series_id, row.series_attrs) if has_series else None,
        series_study_uid=row.series_study_uid if has_series else None,
    )
