"""One matching engine for QIDO-RS and C-FIND (PS3.4 C.2.2.2, PS3.18 10.6).

Supports single-value and universal matching, the wildcards ``*`` and ``?``, DA/TM/DT
ranges, UID lists, multi-valued CS keys and fuzzy person-name matching by word prefix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.archive.attributes import (
    PATIENT_TAGS,
    SHARED_TAGS,
    STUDY_SHOWN_TAGS,
    normalise_name,
    pad_time,
    pick,
    tag_of,
)
from hub.archive.corrected import presented
from hub.archive.index import instances, patients, series, studies
from hub.archive.scope import ReadScope

Level = Literal["PATIENT", "STUDY", "SERIES", "INSTANCE"]
LEVELS: tuple[Level, ...] = ("PATIENT", "STUDY", "SERIES", "INSTANCE")


class QueryError(ValueError):
    """A query the engine cannot answer as asked (HTTP 400, DIMSE 0xA900/0xC000)."""


@dataclass(frozen=True)
class Key:
    level: Level
    column: Any
    kind: str  # text, cs, uid, date, time, int, pn, multi (a multi-valued CS)


# A patient's name, birth date and sex are matched as each study recorded them (two senders
# may name one patient differently) or as the patient administration corrected them since
# (``hub.archive.corrected``); its ID and issuer are the patient's.
KEYS: dict[str, Key] = {
    "PatientName": Key("PATIENT", studies.c.patient_name, "pn"),
    "PatientID": Key("PATIENT", patients.c.patient_id, "text"),
    "IssuerOfPatientID": Key("PATIENT", patients.c.issuer, "text"),
    "PatientBirthDate": Key("PATIENT", studies.c.patient_birth_date, "date"),
    "PatientSex": Key("PATIENT", studies.c.patient_sex, "cs"),
    "StudyInstanceUID": Key("STUDY", studies.c.study_uid, "uid"),
    "StudyDate": Key("STUDY", studies.c.study_date, "date"),
    "StudyTime": Key("STUDY", studies.c.study_time, "time"),
    "AccessionNumber": Key("STUDY", studies.c.accession, "text"),
    "StudyID": Key("STUDY", studies.c.study_id, "text"),
    "StudyDescription": Key("STUDY", studies.c.description, "text"),
    "ReferringPhysicianName": Key("STUDY", studies.c.referring, "pn"),
    "ModalitiesInStudy": Key("STUDY", studies.c.modalities, "multi"),
    "SeriesInstanceUID": Key("SERIES", series.c.series_uid, "uid"),
    "Modality": Key("SERIES", series.c.modality, "cs"),
    "SeriesNumber": Key("SERIES", series.c.series_number, "int"),
    "SeriesDescription": Key("SERIES", series.c.description, "text"),
    "PerformedProcedureStepStartDate": Key("SERIES", series.c.pps_start_date, "date"),
    "PerformedProcedureStepStartTime": Key("SERIES", series.c.pps_start_time, "time"),
    "SOPInstanceUID": Key("INSTANCE", instances.c.sop_uid, "uid"),
    "SOPClassUID": Key("INSTANCE", instances.c.sop_class_uid, "uid"),
    "InstanceNumber": Key("INSTANCE", instances.c.instance_number, "int"),
    "ImageType": Key("INSTANCE", instances.c.image_type, "multi"),
    "ContainerIdentifier": Key("INSTANCE", instances.c.container_id, "text"),
}
NORMALISED = {
    studies.c.patient_name: studies.c.patient_name_norm,
    studies.c.referring: studies.c.referring_norm,
}
TAG_TO_KEYWORD = {tag_of(k): k for k in KEYS}
# The kinds of matching (PS3.4 C.2.2.2) ``match`` does for each kind of key, besides the
# universal matching (an empty value or "*") every key takes. Fuzzy matching of person names
# is the caller's choice (``Query.fuzzy``), not the key's.
MATCHING: dict[str, tuple[str, ...]] = {
    "text": ("single value", "wildcard"),
    "cs": ("single value", "wildcard", "multiple values"),
    "uid": ("single value", "list of UIDs"),
    "date": ("single value", "wildcard", "range"),
    "time": ("single value", "range"),
    "int": ("single value",),
    "multi": ("single value", "wildcard", "multiple values"),
    "pn": ("single value", "wildcard", "case-insensitive"),
}

# Counts and lists computed per level rather than stored per instance.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what the integer columns hold, on either engine
NUMBER_OF_PATIENT_RELATED_STUDIES = "00201200"
MODALITIES_IN_STUDY = "00080061"
NUMBER_OF_STUDY_RELATED_SERIES = "00201206"
NUMBER_OF_STUDY_RELATED_INSTANCES = "00201208"
NUMBER_OF_SERIES_RELATED_INSTANCES = "00201209"
AVAILABLE_TRANSFER_SYNTAX = "00083002"


@dataclass
class Query:
    level: Level
    keys: dict[str, str] = field(default_factory=dict)
    study_uid: str | None = None
    series_uid: str | None = None
    fuzzy: bool = False
    include: set[str] | Literal["all"] = field(default_factory=set)
    limit: int | None = None
    offset: int = 0
    # What the caller may read: matches, counts and the attributes shown all come from the
    # objects it admits. Doors with a caller pass the caller's; ALL is for the hub's own use.
    scope: ReadScope = ReadScope.ALL
    # Extra SQL conditions over the instance/series/study join.
    restrict: list[ColumnElement[bool]] = field(default_factory=list)


@dataclass
class QueryResult:
    rows: list[dict[str, Any]]
    truncated: bool  # more matches exist than were returned


def allowed_levels(level: Level) -> set[str]:
    """Keys a query at `level` may match on (relational queries allowed downwards)."""
    if level == "PATIENT":
        return {"PATIENT"}
    if level == "STUDY":
        return {"PATIENT", "STUDY"}
    return {"PATIENT", "STUDY", "SERIES"} | ({"INSTANCE"} if level == "INSTANCE" else set())


def conditions(q: Query) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [instances.c.is_current.is_(True)]
    if q.study_uid:
        where.append(studies.c.study_uid == q.study_uid)
    if q.series_uid:
        where.append(series.c.series_uid == q.series_uid)
    where.extend(q.restrict)
    if (limit := q.scope.condition()) is not None:
        where.append(limit)
    permitted = allowed_levels(q.level)
    for raw_key, value in q.keys.items():
        keyword = TAG_TO_KEYWORD.get(tag_of(raw_key) or "", raw_key)
        key = KEYS.get(keyword)
        if key is None:
            raise QueryError(
                f"{raw_key} is not a matching key here; supported: {', '.join(sorted(KEYS))}"
            )
        if key.level not in permitted:
            raise QueryError(f"{keyword} cannot be matched at {q.level} level")
        if value is None or value == "" or value == "*":
            continue  # universal matching
        if keyword == "ModalitiesInStudy" and not q.scope.everything:
            where.append(_in_visible_series(str(value), q.scope))
            continue
        where.append(match(key, str(value), q.fuzzy))
    return where


def _in_visible_series(value: str, scope: ReadScope) -> ColumnElement[bool]:
    """ModalitiesInStudy for a caller who may read part of a study: the modalities of the
    series it may read (the study's stored list names every sender's)."""
    other_series, other_instances = series.alias("visible_series"), instances.alias("visible")
    visible = (
        select(other_series.c.id)
        .select_from(
            other_instances.join(other_series, other_instances.c.series_fk == other_series.c.id)
        )
        .where(
            other_series.c.study_fk == studies.c.id,
            other_series.c.modality.in_([v for v in value.split("\\") if v]),
            other_instances.c.is_current.is_(True),
        )
    )
    if (limit := scope.condition(other_instances, other_series)) is not None:
        visible = visible.where(limit)
    return exists(visible)


def _integer(value: str) -> int:
    """An integer matching key's value, within what the index's 64-bit columns hold."""
    try:
        number = int(value)
    except ValueError as exc:
        raise QueryError(f"{value!r} is not an integer") from exc
    if not INT64_MIN <= number <= INT64_MAX:
        raise QueryError(f"{value!r} exceeds the 64-bit integer range")
    return number


def match(key: Key, value: str, fuzzy: bool) -> ColumnElement[bool]:
    col = key.column
    if key.kind == "uid":
        return col.in_(value_list(value))
    if key.kind in ("date", "time") and "-" in value:
        return _range(col, value, key.kind)
    if key.kind == "time":
        return col.like(pad_time(value)[:6] + "%")
    if key.kind == "int":
        return col == _integer(value)
    if key.kind == "cs":
        return or_(*(_text(col, v) for v in value_list(value)))
    if key.kind == "multi":
        values = value_list(value)
        padded = literal("\\") + col + literal("\\")
        return or_(*(padded.like(f"%\\{_like(v)}\\%", escape="!") for v in values))
    if key.kind == "pn":
        return _person_name(col, value, fuzzy)
    return _text(col, value)


def value_list(value: str) -> list[str]:
    """The values of a CS or UID matching key, listed with backslashes (PS3.4 C.2.2.2.8) or
    commas (PS3.18 8.3.4.1; OHIF and dicomweb-client send ``CT,US``). Neither repertoire
    admits a comma (PS3.5 6.2: CS is upper-case letters, digits, space and underscore; UI is
    digits and full stops), so a comma in a C-FIND identifier can only be a separator too."""
    values = [v.strip() for v in value.replace(",", "\\").split("\\") if v.strip()]
    if not values:
        raise QueryError(f"{value!r} lists no value")
    return values


def _like(value: str) -> str:
    escaped = value.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return escaped.replace("*", "%").replace("?", "_")


def _text(col: Any, value: str) -> ColumnElement[bool]:
    if "*" in value or "?" in value:
        return col.like(_like(value), escape="!")
    return col == value


def _range(col: Any, value: str, kind: str) -> ColumnElement[bool]:
    low, _, high = value.partition("-")
    if kind == "time":
        # A whole-second lower bound without its zero fraction: "101530" sorts before
        # "101530.000000", and the worklist keeps its times as HHMMSS.
        low, high = pad_time(low).removesuffix(".000000"), pad_time(high, "9")
    parts = []
    if low:
        parts.append(col >= low)
    if high:
        parts.append(col <= high)
    parts.append(col != "")
    return and_(*parts)


def _person_name(col: Any, value: str, fuzzy: bool) -> ColumnElement[bool]:
    if not fuzzy:
        # PN matching is case-insensitive in practice (PS3.4 leaves it to the SCP).
        return func.lower(col).like(_like(value.lower()), escape="!")
    words = normalise_name(value.replace("*", " ").replace("?", " ")).split()
    norm = literal(" ") + NORMALISED[col]
    return and_(*(norm.like(f"% {_like(w)}%", escape="!") for w in words))


async def run(conn: AsyncConnection, q: Query, cap: int) -> QueryResult:
    where = conditions(q)
    limit = min(q.limit, cap) if q.limit is not None else cap
    scoped = not q.scope.everything
    stmt = (_scoped_select_for if scoped else _select_for)(q.level).where(*where)
    stmt = stmt.offset(q.offset).limit(limit + 1)
    rows = (await conn.execute(stmt)).mappings().all()
    truncated = len(rows) > limit
    rows = rows[:limit]
    if scoped:
        out = await _scoped_rows(conn, q, rows)
    elif q.level == "PATIENT":
        out = [_patient_row(r) for r in rows]
    elif q.level == "STUDY":
        out = [_study_row(r) for r in rows]
    elif q.level == "SERIES":
        out = [_series_row(r) for r in rows]
    else:
        out = [await _instance_row(conn, r, q.include) for r in rows]
    out = [presented(shown, r.corrected) for shown, r in zip(out, rows, strict=True)]
    return QueryResult(rows=out, truncated=truncated)


def _joined():
    return (
        instances.join(series, instances.c.series_fk == series.c.id)
        .join(studies, series.c.study_fk == studies.c.id)
        .join(patients, studies.c.patient_fk == patients.c.id)
    )


def _select_for(level: Level):
    j = _joined()
    if level == "PATIENT":
        count = func.count(func.distinct(studies.c.id)).label("n")
        return (
            select(patients.c.id, patients.c.attrs.label("p_attrs"), patients.c.corrected, count)
            .select_from(j)
            .group_by(patients.c.id)
            .order_by(patients.c.patient_name, patients.c.id)
        )
    if level == "STUDY":
        return (
            select(
                studies.c.id,
                studies.c.attrs.label("s_attrs"),
                studies.c.modalities,
                studies.c.num_series,
                studies.c.num_instances,
                patients.c.corrected,
            )
            .select_from(j)
            .group_by(studies.c.id, patients.c.id)
            .order_by(studies.c.study_date.desc(), studies.c.study_time.desc(), studies.c.id)
        )
    if level == "SERIES":
        return (
            select(
                series.c.id,
                studies.c.attrs.label("s_attrs"),
                series.c.attrs.label("se_attrs"),
                series.c.num_instances,
                patients.c.corrected,
            )
            .select_from(j)
            .group_by(series.c.id, studies.c.id, patients.c.id)
            .order_by(*clinical_series_order())
        )
    return (
        select(
            instances.c.id,
            studies.c.attrs.label("s_attrs"),
            series.c.attrs.label("se_attrs"),
            instances.c.attrs.label("i_attrs"),
            instances.c.transfer_syntax,
            patients.c.corrected,
        )
        .select_from(j)
        .order_by(*clinical_instance_order())
    )


def _scoped_select_for(level: Level):
    """As ``_select_for``, for a caller who may read only part of the archive: the counts are
    of the objects it may read, and ``rep`` names the first of them, whose attributes it is
    shown at the level of the row (the stored level rows hold what every sender gave)."""
    j = _joined()
    rep = func.min(instances.c.id).label("rep")
    if level == "PATIENT":
        count = func.count(func.distinct(studies.c.id)).label("n")
        return (
            select(patients.c.id, patients.c.corrected, count, rep)
            .select_from(j)
            .group_by(patients.c.id)
            .order_by(func.min(studies.c.patient_name), patients.c.id)
        )
    if level == "STUDY":
        return (
            select(
                studies.c.id,
                func.count(func.distinct(series.c.id)).label("num_series"),
                func.count(instances.c.id).label("num_instances"),
                rep,
                patients.c.corrected,
            )
            .select_from(j)
            .group_by(studies.c.id, patients.c.id)
            .order_by(studies.c.study_date.desc(), studies.c.study_time.desc(), studies.c.id)
        )
    if level == "SERIES":
        return (
            select(
                series.c.id,
                func.count(instances.c.id).label("num_instances"),
                rep,
                patients.c.corrected,
            )
            .select_from(j)
            .group_by(series.c.id, studies.c.id, patients.c.id)
            .order_by(*clinical_series_order())
        )
    return (
        select(
            instances.c.id.label("rep"),
            instances.c.id,
            instances.c.attrs.label("i_attrs"),
            instances.c.transfer_syntax,
            patients.c.corrected,
        )
        .select_from(j)
        .order_by(*clinical_instance_order())
    )


async def _scoped_rows(conn: AsyncConnection, q: Query, rows: list[Any]) -> list[dict[str, Any]]:
    shared = await _shared_attributes(conn, [r.rep for r in rows])
    if q.level == "PATIENT":
        return [
            _merge(pick(shared[r.rep], PATIENT_TAGS), {NUMBER_OF_PATIENT_RELATED_STUDIES: _is(r.n)})
            for r in rows
        ]
    if q.level == "STUDY":
        modalities = await _visible_modalities(conn, q.scope, [r.id for r in rows])
        return [
            _merge(
                pick(shared[r.rep], STUDY_SHOWN_TAGS),
                _study_counts(modalities.get(r.id, []), r.num_series, r.num_instances),
            )
            for r in rows
        ]
    if q.level == "SERIES":
        return [
            _merge(shared[r.rep], {NUMBER_OF_SERIES_RELATED_INSTANCES: _is(r.num_instances)})
            for r in rows
        ]
    return [await _instance_row(conn, r, q.include, [shared[r.rep]]) for r in rows]


async def _shared_attributes(conn: AsyncConnection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The patient, study and series attributes each of these instances carries."""
    if not ids:
        return {}
    stmt = select(instances.c.id, instances.c.shared, instances.c.metadata).where(
        instances.c.id.in_(ids)
    )
    out = {}
    for row in (await conn.execute(stmt)).all():
        if row.shared != "{}":
            out[row.id] = json.loads(row.shared)
        else:  # indexed before instances kept their shared attributes
            out[row.id] = pick(json.loads(row.metadata), SHARED_TAGS)
    return out


async def _visible_modalities(
    conn: AsyncConnection, scope: ReadScope, study_ids: list[int]
) -> dict[int, list[str]]:
    if not study_ids:
        return {}
    stmt = (
        select(series.c.study_fk, series.c.modality)
        .distinct()
        .select_from(instances.join(series, instances.c.series_fk == series.c.id))
        .where(instances.c.is_current.is_(True), series.c.study_fk.in_(study_ids))
    )
    if (limit := scope.condition()) is not None:
        stmt = stmt.where(limit)
    out: dict[int, list[str]] = {}
    for study_fk, modality in (await conn.execute(stmt)).all():
        if modality:
            out.setdefault(study_fk, []).append(modality)
    return {k: sorted(v) for k, v in out.items()}


def clinical_series_order() -> list[Any]:
    return [
        studies.c.id,
        series.c.series_number.is_(None),
        series.c.series_number,
        series.c.first_time,
        series.c.id,
    ]


def clinical_instance_order() -> list[Any]:
    return [
        *clinical_series_order(),
        instances.c.instance_number.is_(None),
        instances.c.instance_number,
        instances.c.sort_time,
        instances.c.sop_uid,
    ]


def _merge(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out.update(part)
    return dict(sorted(out.items()))


def _patient_row(r: Any) -> dict[str, Any]:
    return _merge(json.loads(r.p_attrs), {NUMBER_OF_PATIENT_RELATED_STUDIES: _is(r.n)})


def _study_row(r: Any) -> dict[str, Any]:
    modalities = [m for m in r.modalities.split("\\") if m]
    return _merge(json.loads(r.s_attrs), _study_counts(modalities, r.num_series, r.num_instances))


def _study_counts(modalities: list[str], num_series: int, num_instances: int) -> dict[str, Any]:
    return {
        # OHIF fails on an element with a VR and an empty Value: no Value key then.
        MODALITIES_IN_STUDY: {"vr": "CS", "Value": modalities} if modalities else {"vr": "CS"},
        NUMBER_OF_STUDY_RELATED_SERIES: _is(num_series),
        NUMBER_OF_STUDY_RELATED_INSTANCES: _is(num_instances),
    }


def _series_row(r: Any) -> dict[str, Any]:
    return _merge(
        json.loads(r.s_attrs),
        json.loads(r.se_attrs),
        {NUMBER_OF_SERIES_RELATED_INSTANCES: _is(r.num_instances)},
    )


async def _instance_row(
    conn: AsyncConnection, r: Any, include: set[str] | str, levels: list[dict] | None = None
) -> dict[str, Any]:
    """``levels``: the attributes of the levels above; by default the stored level rows'."""
    if levels is None:
        levels = [json.loads(r.s_attrs), json.loads(r.se_attrs)]
    parts = [*levels, json.loads(r.i_attrs)]
    if include:
        full = json.loads(
            (
                await conn.execute(select(instances.c.metadata).where(instances.c.id == r.id))
            ).scalar()
        )
        parts.append(full if include == "all" else {t: full[t] for t in include if t in full})
    parts.append({AVAILABLE_TRANSFER_SYNTAX: {"vr": "UI", "Value": [r.transfer_syntax]}})
    return _merge(*parts)


def _is(n: int) -> dict[str, Any]:
    return {"vr": "IS", "Value": [int(n)]}
