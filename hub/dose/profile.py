"""A resolved patient's dose profile: events, studies, and cumulative E over 12 weeks, 1 year,
5 years and the whole record, from the estimates stored at ingest."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import DoseSettings
from hub.dose.estimate import KTable
from hub.dose.tables import dose_estimates, dose_events, dose_identities, dose_reports

WINDOWS: tuple[tuple[str, int | None], ...] = (
    ("12w", 7 * 12),
    ("1y", 365),
    ("5y", 5 * 365 + 1),
    ("lifetime", None),
)
ICRP103 = "adult_icrp103"
NOTICE = (
    "Effective dose is a population estimate for a reference person of the patient's age, "
    "from the scanner's DLP and published conversion coefficients; it is not a measure of "
    "this patient's individual risk."
)
EVENT_COLUMNS = (
    "study_uid",
    "event_uid",
    "event_date",
    "protocol",
    "region_scheme",
    "region_code",
    "region_meaning",
    "phantom",
    "ctdivol_mgy",
    "dlp_mgycm",
    "scanner_e_msv",
    "table_id",
    "age_column",
    "region_row",
    "region_source",
    "k",
    "e_msv",
    "flags",
)


@dataclass(frozen=True)
class Profiles:
    engine: AsyncEngine
    table: KTable
    settings: DoseSettings

    async def patients(self, include_excluded: bool = False) -> list[dict[str, Any]]:
        counts = (
            select(
                dose_events.c.identity_fk,
                func.count().label("events"),
                func.count(func.distinct(dose_events.c.study_uid)).label("studies"),
            )
            .group_by(dose_events.c.identity_fk)
            .subquery()
        )
        q = (
            select(dose_identities, counts.c.events, counts.c.studies)
            .select_from(
                dose_identities.outerjoin(counts, counts.c.identity_fk == dose_identities.c.id)
            )
            .order_by(dose_identities.c.id)
        )
        q = q.where(dose_identities.c.merged_into.is_(None))
        if not include_excluded:
            q = q.where(dose_identities.c.excluded.is_(False))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{**_identity(r), "events": r.events or 0, "studies": r.studies or 0} for r in rows]

    async def profile(self, identity_id: int, at: date) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            who = (
                await conn.execute(
                    select(dose_identities).where(dose_identities.c.id == identity_id)
                )
            ).first()
            if who is None:
                return None
            events = await self._events(conn, dose_events.c.identity_fk == identity_id)
        studies: dict[str, dict[str, Any]] = {}
        for e in events:
            s = studies.setdefault(
                e["study_uid"],
                {
                    "study_uid": e["study_uid"],
                    "date": e["event_date"],
                    "events": 0,
                    "dlp_mgycm": 0.0,
                    "e_msv": 0.0,
                    "flagged": False,
                },
            )
            s["events"] += 1
            s["dlp_mgycm"] += e["dlp_mgycm"] or 0.0
            s["e_msv"] += e["e_msv"] or 0.0
            s["flagged"] = s["flagged"] or bool(e["flags"])
        cumulative = {name: _sum_within(events, at, days) for name, days in WINDOWS}
        latest = max(
            (e for e in events if e["age_column"]), key=lambda e: e["event_date"], default=None
        )
        band = latest["age_column"] if latest else "adult"
        threshold = self.settings.alert_msv.get(band)
        return {
            "identity": _identity(who),
            "at": at.isoformat(),
            "table_id": self.table.id,
            "notice": NOTICE,
            "cumulative_msv": cumulative,
            "cumulative_icrp103_msv": sum(e["e_icrp103_msv"] or 0.0 for e in events),
            "events_without_estimate": sum(1 for e in events if e["e_msv"] is None),
            "alert": {
                "age_column": band,
                "threshold_msv": threshold,
                "exceeded": threshold is not None and cumulative["1y"] > threshold,
            },
            "studies": sorted(studies.values(), key=lambda s: s["date"]),
            "events": events,
        }

    async def study(self, study_uid: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            reports = (
                await conn.execute(
                    select(dose_reports)
                    .where(dose_reports.c.study_uid == study_uid)
                    .order_by(dose_reports.c.id)
                )
            ).all()
            if not reports:
                return None
            events = await self._events(conn, dose_events.c.study_uid == study_uid)
        return {
            "study_uid": study_uid,
            "identity_id": reports[0].identity_fk,
            "events": len(events),
            "dlp_mgycm": round(sum(e["dlp_mgycm"] or 0.0 for e in events), 6),
            "e_msv": sum(e["e_msv"] or 0.0 for e in events),
            "reports": [
                {
                    "sop_uid": r.sop_uid,
                    "accumulated_dlp_mgycm": r.accumulated_dlp,
                    "num_events": r.num_events,
                    "warning": r.warning,
                }
                for r in reports
            ],
            "event_list": events,
        }

    async def events_csv(self, identity_id: int) -> str:
        async with self.engine.connect() as conn:
            events = await self._events(conn, dose_events.c.identity_fk == identity_id)
        out = io.StringIO()
        writer = csv.DictWriter(out, EVENT_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        for e in events:
            writer.writerow({**e, "flags": " ".join(e["flags"])})
        return out.getvalue()

    async def _events(self, conn, where) -> list[dict[str, Any]]:
        """Events with their estimate from the current table (the age-specific one, and the
        ICRP 103 one where there is one), oldest first."""
        primary = dose_estimates.alias("primary_estimate")
        icrp103 = dose_estimates.alias("icrp103_estimate")
        q = (
            select(
                dose_events,
                primary.c.table_id.label("estimate_table"),
                primary.c.age_column,
                primary.c.region_row,
                primary.c.region_source,
                primary.c.k,
                primary.c.e_msv,
                primary.c.flags,
                icrp103.c.e_msv.label("e_icrp103_msv"),
            )
            .select_from(
                dose_events.outerjoin(
                    primary,
                    and_(
                        primary.c.event_fk == dose_events.c.id,
                        primary.c.table_id == self.table.id,
                        primary.c.age_column != ICRP103,
                    ),
                ).outerjoin(
                    icrp103,
                    and_(
                        icrp103.c.event_fk == dose_events.c.id,
                        icrp103.c.table_id == self.table.id,
                        icrp103.c.age_column == ICRP103,
                    ),
                )
            )
            .where(where)
            .order_by(dose_events.c.event_date, dose_events.c.id)
        )
        rows = (await conn.execute(q)).all()
        return [_event(r) for r in rows]


def _identity(r) -> dict[str, Any]:
    return {
        "id": r.id,
        "patient_id": r.patient_id,
        "issuer": r.issuer,
        "name": r.patient_name,
        "birth_date": r.birth_date,
        "sex": r.sex,
        "review": r.review,
        "review_reason": r.review_reason,
        "excluded": r.excluded,
        "excluded_reason": r.excluded_reason,
        "merged_into": r.merged_into,
    }


def _event(r) -> dict[str, Any]:
    return {
        "study_uid": r.study_uid,
        "event_uid": r.event_uid,
        "event_date": r.event_date,
        "protocol": r.protocol,
        "region_scheme": r.region_scheme,
        "region_code": r.region_code,
        "region_meaning": r.region_meaning,
        "phantom": r.phantom,
        "ctdivol_mgy": r.ctdivol,
        "dlp_mgycm": r.dlp,
        "scanner_e_msv": r.scanner_e,
        "table_id": r.estimate_table,
        "age_column": r.age_column,
        "region_row": r.region_row,
        "region_source": r.region_source,
        "k": r.k,
        "e_msv": r.e_msv,
        "e_icrp103_msv": r.e_icrp103_msv,
        "flags": [f for f in (r.flags or "").split(",") if f],
    }


def _sum_within(events: list[dict[str, Any]], at: date, days: int | None) -> float:
    start = None if days is None else at - timedelta(days=days)
    total = 0.0
    for e in events:
        when = _day(e["event_date"])
        if e["e_msv"] is None:
            continue
        if start is None or (when is not None and start < when <= at):
            total += e["e_msv"]
    return total


def _day(text: str) -> date | None:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        return None
