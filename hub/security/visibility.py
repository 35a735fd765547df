"""Row-level read limits beyond the route check: which stored objects a principal may see.

Clinics read what they uploaded themselves; specialists read ultrasound; the other roles
read everything. The DICOMweb and DIMSE doors add ``read_restriction(principal)`` to their
queries (QIDO-RS, C-FIND, C-MOVE, C-GET) and DICOMweb asks ``may_read`` before serving a
study, series or instance (WADO). ``worklist_restriction`` does the same for the worklist
(REST and Modality Worklist).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from sqlalchemy import ColumnElement, exists, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive.index import instances, series, studies
from hub.security.accounts import Principal
from hub.security.policy import READ_SCOPE


def _joined():
    return instances.join(series, instances.c.series_fk == series.c.id).join(
        studies, series.c.study_fk == studies.c.id
    )


def read_restriction(who: Principal | None) -> ColumnElement[bool] | None:
    """A condition over the instances/series/studies join; None when nothing is hidden."""
    if who is None:
        return instances.c.id.is_(None)  # nobody: matches no stored instance
    scope = READ_SCOPE.get(who.role, "none")
    if scope == "all":
        return None
    if scope == "own":
        return instances.c.actor == who.user
    if scope.startswith("modality:"):
        return series.c.modality == scope.split(":", 1)[1]
    return instances.c.id.is_(None)


def worklist_restriction(who: Principal) -> ColumnElement[bool] | None:
    """The worklist items ``who`` may see, as a condition over ``worklist_items``; None: all.

    A clinic sees the items assigned to it (``clinic``, set by whoever schedules the step)
    and the items it created; a specialist the ultrasound steps; the others everything.
    """
    from hub.worklist.model import worklist_items  # the table lives with its feature

    scope = READ_SCOPE.get(who.role, "none")
    if scope == "all":
        return None
    items = worklist_items.c
    if scope == "own":
        return or_(items.clinic == who.user, items.created_by == who.user)
    if scope.startswith("modality:"):
        return items.modality == scope.split(":", 1)[1]
    return false()


async def may_read(
    engine: AsyncEngine,
    who: Principal | None,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> bool:
    """Whether the principal may see this object: all of it, for a study or a series.

    A study that also holds objects the principal may not see is refused as a whole; its own
    instances stay readable one by one and show in searches.
    """
    restriction = read_restriction(who)
    if restriction is None:
        return True
    scope = [studies.c.study_uid == study_uid, instances.c.is_current.is_(True)]
    if series_uid is not None:
        scope.append(series.c.series_uid == series_uid)
    if sop_uid is not None:
        scope.append(instances.c.sop_uid == sop_uid)
    hidden = func.coalesce(restriction, false()) == false()  # NULL actor: not the caller's

    def any_where(*extra: ColumnElement[bool]):
        return exists(select(instances.c.id).select_from(_joined()).where(*scope, *extra))

    async with engine.connect() as conn:
        row = (await conn.execute(select(any_where(restriction), any_where(hidden)))).one()
    return bool(row[0]) and not row[1]


async def visible_sop_uids(
    engine: AsyncEngine, who: Principal | None, study_uid: str
) -> set[str] | None:
    """The study's instances the principal may see; None when it may see them all."""
    restriction = read_restriction(who)
    if restriction is None:
        return None
    query = (
        select(instances.c.sop_uid)
        .select_from(_joined())
        .where(studies.c.study_uid == study_uid, instances.c.is_current.is_(True), restriction)
    )
    async with engine.connect() as conn:
        return set((await conn.scalars(query)).all())


# Positive answers are kept for a minute per process: a viewer asks about the same instance
# for every frame, and an object once visible to a user stays so (uploads are not re-owned).
_CACHE_SECONDS = 60.0
_seen: OrderedDict[tuple, float] = OrderedDict()


async def may_read_cached(
    engine: AsyncEngine,
    who: Principal,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> bool:
    """``may_read`` without a database round trip for every frame of a visible instance."""
    if read_restriction(who) is None:
        return True
    key = (who.user, who.role, study_uid, series_uid, sop_uid)
    now = time.monotonic()
    seen = _seen.get(key)
    if seen is not None and now - seen < _CACHE_SECONDS:
        return True
    if not await may_read(engine, who, study_uid, series_uid, sop_uid):
        return False
    _seen[key] = now
    _seen.move_to_end(key)
    while len(_seen) > 20_000:
        _seen.popitem(last=False)
    return True


STUDY, SERIES, SOP = "0020000D", "0020000E", "00080018"


def _uid(row: dict, tag: str) -> str | None:
    values = (row.get(tag) or {}).get("Value") or [None]
    return values[0]


async def filter_rows(engine: AsyncEngine, who: Principal, rows: list[dict]) -> list[dict]:
    """Keep the DICOM JSON rows (QIDO results, metadata) of objects the principal may see.

    A row is judged at its own level: an instance by its SOP Instance UID, a series by its
    Series Instance UID, a study by its Study Instance UID.
    """
    restriction = read_restriction(who)
    if restriction is None:
        return rows
    studies_asked = {u for r in rows if (u := _uid(r, STUDY))}
    if not studies_asked:
        return []
    query = (
        select(studies.c.study_uid, series.c.series_uid, instances.c.sop_uid)
        .select_from(_joined())
        .where(
            studies.c.study_uid.in_(studies_asked),
            instances.c.is_current.is_(True),
            restriction,
        )
    )
    async with engine.connect() as conn:
        visible = (await conn.execute(query)).all()
    by_level = {
        SOP: {v.sop_uid for v in visible},
        SERIES: {v.series_uid for v in visible},
        STUDY: {v.study_uid for v in visible},
    }
    kept = []
    for row in rows:
        tag = SOP if SOP in row else SERIES if SERIES in row else STUDY
        if _uid(row, tag) in by_level[tag]:
            kept.append(row)
    return kept
