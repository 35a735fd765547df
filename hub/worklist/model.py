"""Scheduled procedure steps: the table behind the Modality Worklist and its state changes.

One row is one scheduled procedure step of one requested procedure (the usual 1:1 case of a
small clinic). The StudyInstanceUID is assigned when the step is created, so images acquired
for it (by a modality, a telehealth capture or a slide upload) land in one study.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
import typing
from dataclasses import dataclass, field
from datetime import date, datetime

import msgspec
from pydicom.uid import generate_uid
from sqlalchemy import (
    Column,
    ColumnElement,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.archive.index import metadata
from hub.archive.query import Key, match
from hub.worklist.states import (  # noqa: F401 - model.STATUSES etc. are used elsewhere
    CANCELLED,
    COMPLETED,
    SCHEDULED,
    STARTED,
    STATUSES,
    TRANSITIONS,
)

worklist_items = Table(
    "worklist_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_name", String(324), nullable=False, default=""),
    Column("patient_id", String(64), nullable=False, default=""),
    Column("birth_date", String(8), nullable=False, default=""),
    Column("sex", String(16), nullable=False, default=""),
    Column("age", String(4), nullable=False, default=""),
    Column("weight_kg", Float, nullable=True),
    Column("size_m", Float, nullable=True),
    Column("accession", String(16), nullable=False),
    Column("requested_procedure_id", String(16), nullable=False),
    Column("requested_procedure_description", String(64), nullable=False, default=""),
    Column("requested_procedure_codes", Text, nullable=False, default="[]"),
    Column("sps_id", String(16), nullable=False),
    Column("sps_description", String(64), nullable=False, default=""),
    Column("protocol_codes", Text, nullable=False, default="[]"),
    Column("station_ae", String(16), nullable=False, default=""),
    Column("modality", String(16), nullable=False),
    Column("start_date", String(8), nullable=False),
    Column("start_time", String(16), nullable=False, default=""),
    Column("performing_physician", String(324), nullable=False, default=""),
    Column("referring_physician", String(324), nullable=False, default=""),
    Column("status", String(16), nullable=False, default=SCHEDULED),
    Column("study_uid", String(64), nullable=False, unique=True),
    # Who sees the item besides administrators: the clinic account it is assigned to, and
    # the account that created it (user names; NULL for items from the command line).
    Column("clinic", String(128), nullable=True),
    Column("created_by", String(128), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
for _c in (
    "start_date",
    "modality",
    "station_ae",
    "status",
    "patient_id",
    "accession",
    "clinic",
):
    Index(f"ix_worklist_{_c}", worklist_items.c[_c])


class WorklistError(ValueError):
    """Bad input for a worklist item (HTTP 400 / CLI exit 2)."""


class TransitionError(Exception):
    """The item is not in a state that allows the requested change (HTTP 409)."""


@dataclass(frozen=True)
class Code:
    value: str
    scheme: str
    meaning: str

    @classmethod
    def parse(cls, raw: dict | str) -> Code:
        """A code from {"value", "scheme", "meaning"} or "value^scheme^meaning"."""
        if isinstance(raw, str):
            parts = raw.split("^")
            if len(parts) != 3:
                raise WorklistError(f"code {raw!r} is not value^scheme^meaning")
            raw = dict(zip(("value", "scheme", "meaning"), parts, strict=True))
        try:
            code = cls(str(raw["value"]), str(raw["scheme"]), str(raw["meaning"]))
        except (KeyError, TypeError) as exc:
            raise WorklistError(f"code {raw!r} needs value, scheme and meaning") from exc
        if not (code.value and code.scheme and code.meaning):
            raise WorklistError(f"code {raw!r} has an empty part")
        return code


@dataclass
class WorklistItem:
    id: int
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    age: str
    weight_kg: float | None
    size_m: float | None
    accession: str
    requested_procedure_id: str
    requested_procedure_description: str
    requested_procedure_codes: list[Code]
    sps_id: str
    sps_description: str
    protocol_codes: list[Code]
    station_ae: str
    modality: str
    start_date: str
    start_time: str
    performing_physician: str
    referring_physician: str
    status: str
    study_uid: str
    clinic: str | None
    created_by: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row) -> WorklistItem:
        values = dict(row._mapping)
        for key in ("requested_procedure_codes", "protocol_codes"):
            values[key] = [Code(**c) for c in json.loads(values[key])]
        return cls(**values)

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        for key in ("requested_procedure_codes", "protocol_codes"):
            out[key] = [c.__dict__ for c in out[key]]
        return out


@dataclass
class WorklistFilter:
    """Matching keys shared by the REST list, the CLI and the MWL C-FIND.

    Values use DICOM matching: wildcards * and ? (patient name case-insensitive), date and
    time ranges (YYYYMMDD-YYYYMMDD, open either side), UID lists separated by backslashes.
    """

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    requested_procedure_id: str = ""
    sps_id: str = ""
    study_uid: str = ""
    modality: str = ""
    station_ae: str = ""
    start_date: str = ""
    start_time: str = ""
    statuses: tuple[str, ...] = ()
    limit: int | None = None
    # Extra SQL conditions over worklist_items set by a door for access limits (as
    # Query.restrict for the archive).
    restrict: list[ColumnElement[bool]] = field(default_factory=list)


@dataclass
class NewItem:
    """Input for create(); validated in normalise()."""

    patient_name: str
    patient_id: str
    modality: str
    birth_date: str = ""
    sex: str = ""
    age: str = ""
    weight_kg: float | None = None
    size_m: float | None = None
    accession: str = ""
    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    requested_procedure_codes: list = field(default_factory=list)
    sps_id: str = ""
    sps_description: str = ""
    protocol_codes: list = field(default_factory=list)
    station_ae: str = ""
    start: str = ""  # ISO 8601 date-time; default now
    performing_physician: str = ""
    referring_physician: str = ""
    clinic: str = ""  # the clinic account the step is for (it sees it in its worklist)

    @classmethod
    def from_json(cls, body: dict) -> NewItem:
        if not isinstance(body, dict):
            raise WorklistError("body must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(body) - known)
        if unknown:
            raise WorklistError(f"unknown fields: {', '.join(unknown)}")
        try:
            return cls(**body)
        except TypeError as exc:
            raise WorklistError(str(exc)) from exc


# Edits: any input field of a new item; those left out keep their values.
ItemEdit = dataclasses.make_dataclass(
    "ItemEdit",
    [
        (name, hint | msgspec.UnsetType, field(default=msgspec.UNSET))
        for name, hint in typing.get_type_hints(NewItem).items()
    ],
    namespace={
        "__doc__": "The fields of a step to change; the others keep their values.",
        "__module__": __name__,
    },
)
EDITABLE = (SCHEDULED, STARTED)


def as_new_item(item: WorklistItem) -> NewItem:
    """The item in its input shape, so an edit is validated as a new item is."""
    given = {f.name: getattr(item, f.name, None) for f in dataclasses.fields(NewItem)}
    d, t = item.start_date, item.start_time.ljust(6, "0")
    given |= {
        "start": f"{d[:4]}-{d[4:6]}-{d[6:8]}T{t[:2]}:{t[2:4]}:{t[4:6]}",
        "clinic": item.clinic or "",
        "requested_procedure_codes": [c.__dict__ for c in item.requested_procedure_codes],
        "protocol_codes": [c.__dict__ for c in item.protocol_codes],
    }
    return NewItem(**given)


async def edit(
    engine: AsyncEngine, item_id: int, changes: dict, restrict: ColumnElement[bool] | None = None
) -> tuple[WorklistItem, WorklistItem]:
    """Change the given fields of a scheduled or started step; (before, after). The step keeps
    its status, StudyInstanceUID and creator. KeyError: no such step (or none ``restrict`` lets
    the caller see); TransitionError: the step is completed or cancelled."""
    async with engine.begin() as conn:
        stmt = select(worklist_items).where(worklist_items.c.id == int(item_id))
        if restrict is not None:
            stmt = stmt.where(restrict)
        row = (await conn.execute(stmt)).first()
        if row is None:
            raise KeyError(item_id)
        before = WorklistItem.from_row(row)
        if before.status not in EDITABLE:
            raise TransitionError(f"item {item_id} is {before.status}; cannot edit it")
        values = normalise(_merged(before, changes))
        for kept in ("status", "study_uid", "created_at", "updated_at"):
            values.pop(kept)
        if not await change_row(conn, before.id, EDITABLE, values):
            raise TransitionError(f"item {item_id} changed status; cannot edit it")
        after = await item_for_study(conn, [before.study_uid])
    assert after is not None
    return before, after


def _merged(before: WorklistItem, changes: dict) -> NewItem:
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(NewItem)})
    if unknown:
        raise WorklistError(f"unknown fields: {', '.join(unknown)}")
    merged = dataclasses.replace(as_new_item(before), **changes)
    if merged.birth_date and "age" not in changes:
        merged.age = ""  # worked out again from the birth date and the start
    return merged


def _short_id(prefix: str) -> str:
    # SH values are at most 16 characters: a prefix and 12 random hex digits.
    return prefix + secrets.token_hex(6).upper()


def _dicom_date(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        return ""
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).strftime("%Y%m%d")
        except ValueError:
            pass
    raise WorklistError(f"{what} {value!r} is not a date (YYYYMMDD or YYYY-MM-DD)")


def age_string(birth: str, on: str) -> str:
    """DICOM AS (PS3.5 6.2) from birth date to procedure date: days, weeks, months or years."""
    b = datetime.strptime(birth, "%Y%m%d").date()
    d = datetime.strptime(on, "%Y%m%d").date()
    days = (d - b).days
    if days < 0:
        raise WorklistError("birth date is after the scheduled date")
    months = (d.year - b.year) * 12 + d.month - b.month - (d.day < b.day)
    if days < 28:
        return f"{days:03d}D"
    if months < 1:
        return f"{days // 7:03d}W"
    if months < 24:
        return f"{months:03d}M"
    return f"{months // 12:03d}Y"


def _check_len(name: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise WorklistError(f"{name} is longer than {limit} characters")
    if "\\" in value:
        raise WorklistError(f"{name} must not contain a backslash")
    return value


def normalise(new: NewItem, today: date | None = None) -> dict:
    """Validate input and fill defaults; returns the column values of a new row."""
    if not new.patient_name.strip() or not new.patient_id.strip():
        raise WorklistError("patient_name and patient_id are required")
    if not new.modality.strip():
        raise WorklistError("modality is required")
    start = datetime.now() if not new.start else _parse_start(new.start)
    start_date = start.strftime("%Y%m%d")
    birth = _dicom_date(new.birth_date, "birth_date")
    sex = new.sex.strip().upper()
    if sex not in ("", "M", "F", "O"):
        raise WorklistError("sex must be M, F or O")
    age = new.age.strip().upper()
    if age and not (len(age) == 4 and age[:3].isdigit() and age[3] in "DWMY"):
        raise WorklistError("age must be a DICOM age string such as 006M")
    if not age and birth:
        age = age_string(birth, start_date)
    weight = _positive(new.weight_kg, "weight_kg", 500)
    size = _positive(new.size_m, "size_m", 3)  # metres: catches sizes given in cm
    codes = [Code.parse(c) for c in new.requested_procedure_codes]
    protocol = [Code.parse(c) for c in new.protocol_codes]
    now = time.time()
    values = {
        "patient_name": _check_len("patient_name", new.patient_name.strip(), 324),
        "patient_id": _check_len("patient_id", new.patient_id.strip(), 64),
        "birth_date": birth,
        "sex": sex,
        "age": age,
        "weight_kg": weight,
        "size_m": size,
        "accession": _check_len("accession", new.accession.strip() or _short_id("A"), 16),
        "requested_procedure_id": _check_len(
            "requested_procedure_id", new.requested_procedure_id.strip() or _short_id("RP"), 16
        ),
        "requested_procedure_description": _check_len(
            "requested_procedure_description", new.requested_procedure_description.strip(), 64
        ),
        "requested_procedure_codes": json.dumps([c.__dict__ for c in codes]),
        "sps_id": _check_len("sps_id", new.sps_id.strip() or _short_id("SPS"), 16),
        "sps_description": _check_len("sps_description", new.sps_description.strip(), 64),
        "protocol_codes": json.dumps([c.__dict__ for c in protocol]),
        "station_ae": _check_len("station_ae", new.station_ae.strip(), 16),
        "modality": _check_len("modality", new.modality.strip().upper(), 16),
        "start_date": start_date,
        "start_time": start.strftime("%H%M%S"),
        "performing_physician": new.performing_physician.strip(),
        "referring_physician": new.referring_physician.strip(),
        "status": SCHEDULED,
        "study_uid": generate_uid(),
        "clinic": _check_len("clinic", new.clinic.strip(), 128) or None,
        "created_at": now,
        "updated_at": now,
    }
    return values


def _parse_start(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise WorklistError(f"start {value!r} is not an ISO 8601 date-time") from exc


def _positive(value: float | str | None, name: str, limit: float) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise WorklistError(f"{name} must be a number") from exc
    if not 0 < number < limit:
        raise WorklistError(f"{name} must be between 0 and {limit}")
    return number


async def create(engine: AsyncEngine, new: NewItem, created_by: str | None = None) -> WorklistItem:
    values = normalise(new) | {"created_by": created_by}
    async with engine.begin() as conn:
        item_id = await insert_row(conn, values)
    item = await get_item(engine, item_id)
    assert item is not None
    return item


async def insert_row(conn: AsyncConnection, values: dict) -> int:
    """Insert normalised column values in the caller's transaction; the new row's id."""
    result = await conn.execute(worklist_items.insert().values(**values))
    return result.inserted_primary_key[0]


async def change_row(
    conn: AsyncConnection, item_id: int, allowed: tuple[str, ...], values: dict
) -> bool:
    """Set ``values`` on the row if its status is one of ``allowed`` (the check and the update
    are one statement), in the caller's transaction; whether it changed."""
    result = await conn.execute(
        update(worklist_items)
        .where(worklist_items.c.id == int(item_id), worklist_items.c.status.in_(allowed))
        .values(**values, updated_at=time.time())
    )
    return result.rowcount == 1


async def item_for_study(conn: AsyncConnection, study_uids: list[str]) -> WorklistItem | None:
    """The step whose StudyInstanceUID is one of ``study_uids`` (the first given wins)."""
    rows = (
        await conn.execute(select(worklist_items).where(worklist_items.c.study_uid.in_(study_uids)))
    ).all()
    rows.sort(key=lambda row: study_uids.index(row.study_uid))
    return WorklistItem.from_row(rows[0]) if rows else None


async def get_item(
    engine: AsyncEngine, item_id: int, restrict: ColumnElement[bool] | None = None
) -> WorklistItem | None:
    """The item, or None if there is none (or none ``restrict`` lets the caller see)."""
    stmt = select(worklist_items).where(worklist_items.c.id == int(item_id))
    if restrict is not None:
        stmt = stmt.where(restrict)
    async with engine.connect() as conn:
        row = (await conn.execute(stmt)).first()
    return WorklistItem.from_row(row) if row else None


async def transition(engine: AsyncEngine, item_id: int, action: str) -> WorklistItem:
    """Apply start/complete/cancel; the status check and the update are one statement."""
    allowed, new_status = TRANSITIONS[action]
    async with engine.begin() as conn:
        changed = await change_row(conn, item_id, allowed, {"status": new_status})
    item = await get_item(engine, item_id)
    if item is None:
        raise KeyError(item_id)
    if not changed:
        raise TransitionError(f"item {item_id} is {item.status}; cannot {action}")
    return item


async def start_for_study(engine: AsyncEngine, study_uid: str) -> bool:
    """Mark the scheduled step of `study_uid` STARTED (its first image has arrived)."""
    t = worklist_items.c
    scheduled = (t.study_uid == study_uid) & (t.status == SCHEDULED)
    async with engine.connect() as conn:  # a read first: most images have no worklist item
        if (await conn.execute(select(t.id).where(scheduled))).first() is None:
            return False
    async with engine.begin() as conn:
        result = await conn.execute(
            update(worklist_items).where(scheduled).values(status=STARTED, updated_at=time.time())
        )
    return result.rowcount > 0


# How each filter field (and the worklist column of that name) is matched: its kind of key in
# the archive's matching engine (hub.archive.query.MATCHING).
MATCHED_AS = {
    "patient_name": "pn",
    "patient_id": "text",
    "accession": "text",
    "requested_procedure_id": "text",
    "sps_id": "text",
    "study_uid": "uid",
    "modality": "text",  # upper-cased first: "us" finds US
    "station_ae": "text",
    "start_date": "date",
    "start_time": "time",
}


def _where(flt: WorklistFilter) -> list:
    """SQL conditions from the archive's matching engine (the one QIDO-RS and C-FIND use)."""
    clauses = []
    for name, kind in MATCHED_AS.items():
        value = getattr(flt, name).strip()
        if name == "modality":
            value = value.upper()
        if value not in ("", "*"):
            key = Key("STUDY", worklist_items.c[name], kind)
            clauses.append(match(key, value, fuzzy=False))
    if flt.statuses:
        clauses.append(worklist_items.c.status.in_(flt.statuses))
    return clauses + flt.restrict


async def search(engine: AsyncEngine, flt: WorklistFilter) -> list[WorklistItem]:
    stmt = (
        select(worklist_items)
        .where(*_where(flt))
        .order_by(worklist_items.c.start_date, worklist_items.c.start_time, worklist_items.c.id)
    )
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [WorklistItem.from_row(r) for r in rows]
