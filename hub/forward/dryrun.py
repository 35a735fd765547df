"""What routing rules would have done with the objects stored most recently.

A dry run changes nothing: it reads the newest current instances from the index and asks each
rule, as the ingest hook would, where it would send them. The index keeps the door and the
sender's account of every object but not the calling AE title of a C-STORE, so a rule that
names calling AE titles matches none of these objects here; the answer says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive.index import instances, series, studies
from hub.archive.model import Indexed, Source
from hub.forward.config import Rule, routes_for

MAX_LAST = 1000


@dataclass(frozen=True)
class Routed:
    event: Indexed
    received_at: float
    sends: list[tuple[str, str]]  # (rule, target)

    def to_json(self) -> dict[str, Any]:
        e = self.event
        return {
            "sop_uid": e.sop_uid,
            "sop_class_uid": e.sop_class_uid,
            "study_uid": e.study_uid,
            "series_uid": e.series_uid,
            "modality": e.modality,
            "door": e.source.door,
            "received_at": self.received_at,
            "sends": [{"rule": rule, "target": target} for rule, target in self.sends],
        }


async def recent(engine: AsyncEngine, last: int) -> list[tuple[Indexed, float]]:
    """The ``last`` newest current instances, newest first, as their ingest events."""
    query = (
        select(
            instances.c.sop_uid,
            instances.c.sop_class_uid,
            instances.c.sha256,
            instances.c.size,
            instances.c.version,
            instances.c.door,
            instances.c.actor,
            instances.c.received_at,
            series.c.series_uid,
            series.c.modality,
            studies.c.study_uid,
            studies.c.accession,
        )
        .join(series, instances.c.series_fk == series.c.id)
        .join(studies, series.c.study_fk == studies.c.id)
        .where(instances.c.is_current.is_(True))
        .order_by(instances.c.received_at.desc(), instances.c.id.desc())
        .limit(last)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [(_event(row), row["received_at"]) for row in rows]


def route(found: list[tuple[Indexed, float]], rules: list[Rule]) -> list[Routed]:
    """Each object with every (rule, target) that would send it, as the forwarder queues them."""
    return [Routed(event, at, routes_for(rules, event)) for event, at in found]


def summary(routed: list[Routed], rules: list[Rule]) -> dict[str, Any]:
    totals: dict[str, int] = {}
    for item in routed:
        for _, target in item.sends:
            totals[target] = totals.get(target, 0) + 1
    return {
        "examined": len(routed),
        "matched": sum(1 for item in routed if item.sends),
        "per_target": totals,
        "unknown": sorted({"calling_ae"} if any(r.calling_ae for r in rules) else set()),
        "objects": [item.to_json() for item in routed],
    }


def _event(row: Any) -> Indexed:
    return Indexed(
        sop_uid=row["sop_uid"],
        sop_class_uid=row["sop_class_uid"],
        study_uid=row["study_uid"],
        series_uid=row["series_uid"],
        modality=row["modality"] or "",
        sha256=row["sha256"],
        size=row["size"],
        version=row["version"],
        source=Source(door=row["door"] or "", actor=row["actor"]),
        patient_id="",
        accession=row["accession"] or "",
    )
