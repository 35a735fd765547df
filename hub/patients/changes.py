"""Updating, merging and reverting patients in the index and the worklist, in the caller's
transaction for a change and in one of its own for a revert.

The index's patients are the hospital's (namespace ""): a clinic's IDs without an issuer mean
something only to the clinic and are not the patient administration's to change. A patient is
found by its ID within the message's issuer, else by its ID alone (modalities fed by the
worklist send no issuer); a patient the index does not know yet is made, without an issuer,
so that objects still to come under its ID find it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.archive.corrected import overlay, patient_columns, study_columns
from hub.archive.index import patients, studies
from hub.archive.merged import surviving
from hub.patients.model import (
    ChangeConflict,
    Demographics,
    PatientError,
    PatientKey,
    identity,
    with_other_id,
)
from hub.patients.tables import patient_changes
from hub.worklist.model import WorklistError, age_string, worklist_items
from hub.worklist.states import SCHEDULED, STARTED

UPDATE, MERGE = "update", "merge"
STEP_COLUMNS = ("patient_id", "patient_name", "birth_date", "sex", "age")
PATIENT_ROW = (
    patients.c.id,
    patients.c.patient_id,
    patients.c.issuer,
    patients.c.attrs,
    patients.c.corrected,
    patients.c.merged_into,
)


@dataclass(frozen=True)
class Origin:
    """Who made a change, for the log and the audit trail."""

    who: str
    source: str = ""
    message: str = ""  # the HL7 message control ID


@dataclass(frozen=True)
class Applied:
    """A change made (or reverted): its log entry and what it touched."""

    id: int
    kind: str
    patient: PatientKey
    prior: PatientKey | None
    studies: int  # the studies that now present the patient as changed
    steps: int  # worklist steps changed


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _key(row: Any) -> PatientKey:
    return PatientKey(row.patient_id, row.issuer)


async def update_patient(
    conn: AsyncConnection, key: PatientKey, given: Demographics, origin: Origin
) -> Applied | str:
    """Correct a patient's demographics (ADT A08); a note instead when nothing changed."""
    row = await _find(conn, key)
    if row is not None and row.merged_into is not None:
        survivor = await _row_by_id(conn, (await surviving(conn, row.id))[0])
        raise PatientError(f"patient {key} was merged into {_key(survivor)}; update that one")
    steps, changed = await _change_steps(conn, [key.patient_id], given, None)
    before: dict[str, Any] = {"corrected": {}, "moved": [], "steps": steps}
    shown = 0
    if row is not None:
        new = {**overlay(row.corrected), **given.elements()}
        if new != overlay(row.corrected):
            before["corrected"][str(row.id)] = row.corrected
            shown = await _correct(conn, row.id, new)
    if not before["corrected"] and not changed:
        return f"patient {key}: nothing to change"
    after = {"given": given.elements(), "studies": shown, "steps": changed}
    change_id = await _log(conn, UPDATE, row, key, None, None, before, after, origin)
    return Applied(change_id, UPDATE, _key(row) if row else key, None, shown, changed)


async def merge_patients(
    conn: AsyncConnection,
    survivor: PatientKey,
    prior: PatientKey,
    given: Demographics,
    origin: Origin,
) -> Applied | str:
    """Merge ``prior`` into ``survivor`` (ADT A40): its studies move to the survivor, which
    presents ``given`` and lists the prior ID among its other IDs. A note instead when the
    merge was made already."""
    target = await _find(conn, survivor) or await _made(conn, survivor, given)
    if target.merged_into is not None:
        raise PatientError(f"patient {survivor} was itself merged into another; merge into that")
    old = await _find(conn, prior)
    if old is not None and old.id == target.id:
        raise PatientError(f"patient {prior} and {survivor} are one patient in the index")
    if old is not None and old.merged_into is not None:
        if (await surviving(conn, old.id))[0] == target.id:
            return f"patient {prior} is merged into {survivor} already"
        raise PatientError(f"patient {prior} was merged into another patient already")
    if old is None:
        old = await _made(conn, prior, Demographics())
    moved = await _move_studies(conn, old.id, target.id)
    steps, changed = await _change_steps(
        conn, [old.patient_id, target.patient_id], given, target.patient_id
    )
    new = with_other_id({**overlay(target.corrected), **identity(_key(target))}, _key(old))
    before = {"corrected": {str(target.id): target.corrected}, "moved": moved, "steps": steps}
    shown = await _correct(conn, target.id, {**new, **given.elements()})
    after = {"given": given.elements(), "studies": shown, "moved": len(moved), "steps": changed}
    change_id = await _log(conn, MERGE, target, survivor, old, prior, before, after, origin)
    return Applied(change_id, MERGE, _key(target), _key(old), shown, changed)


async def revert(engine: AsyncEngine, change_id: int, who: str) -> Applied:
    """Undo a change: LookupError for none such, ChangeConflict when it was undone already or
    a later change of one of its patients still stands."""
    async with engine.begin() as conn:
        change = (
            await conn.execute(select(patient_changes).where(patient_changes.c.id == change_id))
        ).first()
        if change is None:
            raise LookupError(f"no patient change {change_id}")
        touched = [fk for fk in (change.patient_fk, change.prior_fk) if fk is not None]
        if (later := await _later_change(conn, change.id, touched)) is not None:
            raise ChangeConflict(
                f"change {later} was made after it on the same patient; revert that first"
            )
        marked = await conn.execute(
            update(patient_changes)
            .where(patient_changes.c.id == change.id, patient_changes.c.reverted_at.is_(None))
            .values(reverted_at=time.time(), reverted_by=who)
        )
        if marked.rowcount != 1:
            raise ChangeConflict(f"change {change_id} was reverted already")
        before = json.loads(change.before)
        for fk, text in before["corrected"].items():
            await conn.execute(
                update(patients).where(patients.c.id == int(fk)).values(corrected=text)
            )
        if change.kind == MERGE:
            await conn.execute(
                update(studies)
                .where(studies.c.id.in_(before["moved"]), studies.c.patient_fk == change.patient_fk)
                .values(patient_fk=change.prior_fk)
            )
            await conn.execute(
                update(patients).where(patients.c.id == change.prior_fk).values(merged_into=None)
            )
        for item_id, columns in before["steps"].items():
            await conn.execute(
                update(worklist_items)
                .where(worklist_items.c.id == int(item_id))
                .values(**columns, updated_at=time.time())
            )
        shown = 0
        for fk in touched:
            shown += await _present(conn, fk)
    prior = PatientKey(change.prior_id, change.prior_issuer) if change.kind == MERGE else None
    return Applied(
        change.id,
        change.kind,
        PatientKey(change.patient_id, change.issuer),
        prior,
        shown,
        len(before["steps"]),
    )


async def listed(engine: AsyncEngine, patient_id: str | None = None, limit: int = 200) -> list:
    """The latest changes, newest first; of one patient (as survivor or prior) if named."""
    stmt = select(patient_changes).order_by(patient_changes.c.id.desc()).limit(limit)
    if patient_id:
        stmt = stmt.where(
            (patient_changes.c.patient_id == patient_id)
            | (patient_changes.c.prior_id == patient_id)
        )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [_shown(row) for row in rows]


def _shown(row: Any) -> dict[str, Any]:
    after = json.loads(row.after)
    return {
        "id": row.id,
        "kind": row.kind,
        "patient": {"id": row.patient_id, "issuer": row.issuer},
        "prior": {"id": row.prior_id, "issuer": row.prior_issuer} if row.kind == MERGE else None,
        "given": after["given"],
        "studies": after["studies"],
        "moved": after.get("moved", 0),
        "steps": after["steps"],
        "who": row.who,
        "source": row.source,
        "message": row.message,
        "at": row.at,
        "reverted_at": row.reverted_at,
        "reverted_by": row.reverted_by,
    }


# -- the index ---------------------------------------------------------------------------------
async def _find(conn: AsyncConnection, key: PatientKey) -> Any:
    for issuer in dict.fromkeys((key.issuer, "")):
        row = (
            await conn.execute(
                select(*PATIENT_ROW).where(
                    patients.c.namespace == "",
                    patients.c.patient_id == key.patient_id,
                    patients.c.issuer == issuer,
                )
            )
        ).first()
        if row is not None:
            return row
    return None


async def _row_by_id(conn: AsyncConnection, patient_fk: int) -> Any:
    return (await conn.execute(select(*PATIENT_ROW).where(patients.c.id == patient_fk))).one()


async def _made(conn: AsyncConnection, key: PatientKey, given: Demographics) -> Any:
    """A patient row for a patient no object has named yet."""
    attrs = {**identity(PatientKey(key.patient_id)), **given.elements()}
    result = await conn.execute(
        insert(patients).values(
            namespace="",
            patient_id=key.patient_id,
            issuer="",
            attrs=_dumps(attrs),
            corrected="",
            **patient_columns(attrs, ""),
        )
    )
    return await _row_by_id(conn, result.inserted_primary_key[0])


async def _move_studies(conn: AsyncConnection, from_fk: int, to_fk: int) -> list[int]:
    moved = list(
        (await conn.execute(select(studies.c.id).where(studies.c.patient_fk == from_fk))).scalars()
    )
    if moved:
        await conn.execute(update(studies).where(studies.c.id.in_(moved)).values(patient_fk=to_fk))
    await conn.execute(update(patients).where(patients.c.id == from_fk).values(merged_into=to_fk))
    return moved


async def _correct(conn: AsyncConnection, patient_fk: int, elements: dict[str, Any]) -> int:
    """Set the patient's correction; the number of its studies."""
    await conn.execute(
        update(patients).where(patients.c.id == patient_fk).values(corrected=_dumps(elements))
    )
    return await _present(conn, patient_fk)


async def _present(conn: AsyncConnection, patient_fk: int) -> int:
    """Bring the matching columns of the patient and its studies in line with its correction
    (or, without one, with what their objects say); the number of its studies."""
    row = (
        await conn.execute(
            select(patients.c.attrs, patients.c.corrected).where(patients.c.id == patient_fk)
        )
    ).one()
    await conn.execute(
        update(patients)
        .where(patients.c.id == patient_fk)
        .values(**patient_columns(json.loads(row.attrs), row.corrected))
    )
    own = (
        await conn.execute(
            select(studies.c.id, studies.c.attrs).where(studies.c.patient_fk == patient_fk)
        )
    ).all()
    for study_id, attrs in own:
        await conn.execute(
            update(studies)
            .where(studies.c.id == study_id)
            .values(**study_columns(json.loads(attrs), row.corrected))
        )
    return len(own)


async def _later_change(conn: AsyncConnection, change_id: int, touched: list[int]) -> int | None:
    return (
        await conn.execute(
            select(func.min(patient_changes.c.id)).where(
                patient_changes.c.id > change_id,
                patient_changes.c.reverted_at.is_(None),
                patient_changes.c.patient_fk.in_(touched) | patient_changes.c.prior_fk.in_(touched),
            )
        )
    ).scalar()


async def _log(
    conn: AsyncConnection,
    kind: str,
    row: Any,
    key: PatientKey,
    prior_row: Any,
    prior: PatientKey | None,
    before: dict,
    after: dict,
    origin: Origin,
) -> int:
    named = _key(row) if row is not None else key
    prior_named = _key(prior_row) if prior_row is not None else prior or PatientKey("")
    result = await conn.execute(
        insert(patient_changes).values(
            kind=kind,
            patient_fk=row.id if row is not None else None,
            prior_fk=prior_row.id if prior_row is not None else None,
            patient_id=named.patient_id,
            issuer=named.issuer,
            prior_id=prior_named.patient_id,
            prior_issuer=prior_named.issuer,
            before=_dumps(before),
            after=_dumps(after),
            who=origin.who,
            source=origin.source,
            message=origin.message,
            at=time.time(),
        )
    )
    return result.inserted_primary_key[0]


# -- the worklist ------------------------------------------------------------------------------
async def _change_steps(
    conn: AsyncConnection, patient_ids: list[str], given: Demographics, new_id: str | None
) -> tuple[dict[str, dict[str, Any]], int]:
    """Give the open steps (scheduled or started) of these patients the new demographics (and
    ``new_id``): their patient columns as they were, and how many changed."""
    rows = (
        await conn.execute(
            select(
                worklist_items.c.id,
                worklist_items.c.start_date,
                *(worklist_items.c[c] for c in STEP_COLUMNS),
            ).where(
                worklist_items.c.patient_id.in_(patient_ids),
                worklist_items.c.status.in_((SCHEDULED, STARTED)),
            )
        )
    ).all()
    before = {str(r.id): {c: getattr(r, c) for c in STEP_COLUMNS} for r in rows}
    changed = 0
    for row in rows:
        columns = before[str(row.id)]
        values = _step_values(columns, given, new_id, row.start_date)
        if values != columns:
            await conn.execute(
                update(worklist_items)
                .where(worklist_items.c.id == row.id)
                .values(**values, updated_at=time.time())
            )
            changed += 1
    return before, changed


def _step_values(
    columns: dict[str, Any], given: Demographics, new_id: str | None, start: str
) -> dict[str, Any]:
    values = dict(columns)
    if new_id is not None:
        values["patient_id"] = new_id
    if given.name is not None:
        values["patient_name"] = given.name
    if given.sex is not None:
        values["sex"] = given.sex
    if given.birth_date is not None:
        values["birth_date"] = given.birth_date
        try:
            values["age"] = age_string(given.birth_date, start) if given.birth_date else ""
        except WorklistError:  # born after the step's date: the age cannot be told
            values["age"] = ""
    return values
