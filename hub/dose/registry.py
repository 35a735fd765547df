"""The ingest hook: every dose report the archive indexes is read once and its CT events
recorded, each Irradiation Event UID once, with its estimates.

It runs inside the ingest's index transaction, so the events are committed with the object
or not at all. It reads the stored bytes and never changes them; a report it cannot read is
recorded with a warning and no events, and stays stored as sent.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass
from typing import Any

from pydicom import dcmread
from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.archive.blobs import BlobStore
from hub.archive.model import Indexed
from hub.config import DoseSettings
from hub.dose import estimate, identity, rdsr
from hub.dose.tables import dose_estimates, dose_events, dose_reports

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredObject:
    sop_uid: str
    sop_class_uid: str
    study_uid: str
    sha256: str


def stored_object(record: Indexed) -> StoredObject:
    """What the registry needs from the ingest event (the one place that reads it)."""
    return StoredObject(record.sop_uid, record.sop_class_uid, record.study_uid, record.sha256)


@dataclass(frozen=True)
class Reading:
    """A dose report as read from its stored bytes."""

    patient: identity.Demographics
    study_date: str
    study_description: str
    age: estimate.Age
    report: rdsr.DoseReport
    warning: str  # why no events were read; "" when the report was read


def read_report(data: bytes) -> Reading | None:
    """None for an SR that is not a dose report. Blocking: run it in an executor."""
    ds = dcmread(io.BytesIO(data))
    if not rdsr.is_dose_report(ds):
        return None
    study_date = str(ds.get("StudyDate", "") or ds.get("ContentDate", "") or "").strip()
    warning = ""
    try:
        report = rdsr.parse(ds)
    except rdsr.RdsrError as exc:
        report, warning = rdsr.DoseReport(None), str(exc)
    except Exception as exc:  # pydicom on a value it cannot decode, say
        report, warning = rdsr.DoseReport(None), f"unreadable dose report: {exc}"
    return Reading(
        patient=identity.demographics(ds),
        study_date=study_date,
        study_description=str(ds.get("StudyDescription", "") or "").strip(),
        age=estimate.age_at(
            str(ds.get("PatientBirthDate", "") or ""),
            study_date,
            str(ds.get("PatientAge", "") or ""),
        ),
        report=report,
        warning=warning,
    )


class DoseRegistry:
    def __init__(self, store: BlobStore, settings: DoseSettings) -> None:
        self.store = store
        self.settings = settings
        self.table = estimate.current_table(settings)
        self.regions = estimate.load_regions()

    async def on_indexed(self, conn: AsyncConnection, record: Indexed) -> None:
        obj = stored_object(record)
        if obj.sop_class_uid not in rdsr.DOSE_SR_CLASSES:
            return
        data = b"".join([block async for block in self.store.stream(obj.sha256)])
        reading = await asyncio.get_running_loop().run_in_executor(None, read_report, data)
        if reading is not None:
            await self.record(conn, obj, reading)

    async def record(self, conn: AsyncConnection, obj: StoredObject, reading: Reading) -> None:
        known = (
            await conn.execute(
                select(dose_reports.c.id).where(
                    dose_reports.c.sop_uid == obj.sop_uid, dose_reports.c.sha256 == obj.sha256
                )
            )
        ).first()
        if known is not None:
            return
        if reading.warning:
            log.warning("dose report %s: %s", obj.sop_uid, reading.warning)
        identity_fk = await self._identity(conn, obj.study_uid, reading)
        now = time.time()
        report_fk = await _insert_once(
            conn,
            dose_reports,
            ("sop_uid", "sha256"),
            dict(
                sop_uid=obj.sop_uid,
                sha256=obj.sha256,
                study_uid=obj.study_uid,
                identity_fk=identity_fk,
                study_date=reading.study_date,
                study_description=reading.study_description,
                age_years=reading.age.years,
                age_source=reading.age.source,
                accumulated_dlp=reading.report.accumulated_dlp_mgycm,
                num_events=len(reading.report.events),
                warning=reading.warning,
                recorded_at=now,
            ),
        )
        if report_fk is None:  # recorded meanwhile by another node
            return
        uids = [e.uid for e in reading.report.events]
        seen = set()
        if uids:
            seen = set(
                (
                    await conn.execute(
                        select(dose_events.c.event_uid).where(dose_events.c.event_uid.in_(uids))
                    )
                ).scalars()
            )
        new = [e for e in reading.report.events if e.uid not in seen]
        if not new:
            return
        rows = [_event_row(obj, reading, e, report_fk, identity_fk) for e in new]
        await _insert_all_once(conn, dose_events, ("event_uid",), rows)
        # the ids of the events this report added (another node's are not ours to estimate)
        ids = dict(
            (
                await conn.execute(
                    select(dose_events.c.event_uid, dose_events.c.id).where(
                        dose_events.c.report_fk == report_fk
                    )
                )
            ).all()
        )
        estimates = [
            _estimate_row(ids[event.uid], e, now)
            for event in new
            if event.uid in ids
            for e in estimate.estimates(
                event, reading.age, reading.study_description, self.table, self.regions
            )
        ]
        if estimates:
            await conn.execute(insert(dose_estimates), estimates)

    async def _identity(self, conn: AsyncConnection, study_uid: str, reading: Reading) -> int:
        """A study's reports share the identity of its first one (the archive keeps a study
        with one patient)."""
        earlier = (
            await conn.execute(
                select(dose_reports.c.identity_fk)
                .where(dose_reports.c.study_uid == study_uid)
                .order_by(dose_reports.c.id)
                .limit(1)
            )
        ).scalar()
        if earlier is not None:
            return earlier
        return await identity.resolve(conn, reading.patient, self.settings)


def _event_row(
    obj: StoredObject,
    reading: Reading,
    event: rdsr.CtEvent,
    report_fk: int,
    identity_fk: int,
) -> dict[str, Any]:
    region = event.target_region
    return {
        "event_uid": event.uid,
        "study_uid": obj.study_uid,
        "report_fk": report_fk,
        "identity_fk": identity_fk,
        "event_date": reading.study_date,
        "region_scheme": region.scheme if region else "",
        "region_code": region.value if region else "",
        "region_meaning": region.meaning if region else "",
        "protocol": event.protocol,
        "acquisition_type": event.acquisition_type.value if event.acquisition_type else "",
        "phantom": event.phantom.value if event.phantom else "",
        "ctdivol": event.ctdivol_mgy,
        "dlp": event.dlp_mgycm,
        "scanner_e": event.scanner_effective_dose_msv,
    }


def _estimate_row(event_fk: int, e: estimate.Estimate, now: float) -> dict[str, Any]:
    return {
        "event_fk": event_fk,
        "table_id": e.table_id,
        "age_column": e.column,
        "region_row": e.row,
        "region_source": e.region_source,
        "k": e.k,
        "dlp": e.dlp_mgycm,
        "e_msv": e.e_msv,
        "flags": ",".join(e.flags),
        "computed_at": now,
    }


@dataclass(frozen=True)
class Recomputed:
    table_id: str
    events: int  # estimated anew with the table
    estimates: int  # the estimates they got
    unchanged: int  # already estimated with the table, left as they were


async def recompute(
    engine: AsyncEngine, table: estimate.KTable, regions: estimate.Regions
) -> Recomputed:
    """Estimate every recorded event with ``table`` (a new table or a new version of one), next
    to the estimates of earlier tables, which stay; an event already estimated with it is left
    as it is."""
    async with engine.begin() as conn:
        done = set(
            (
                await conn.execute(
                    select(dose_estimates.c.event_fk).where(dose_estimates.c.table_id == table.id)
                )
            ).scalars()
        )
        rows = (
            await conn.execute(
                select(
                    dose_events,
                    dose_reports.c.age_years,
                    dose_reports.c.age_source,
                    dose_reports.c.study_description,
                ).select_from(
                    dose_events.join(dose_reports, dose_reports.c.id == dose_events.c.report_fk)
                )
            )
        ).all()
        now = time.time()
        added = [
            _estimate_row(row.id, e, now)
            for row in rows
            if row.id not in done
            for e in estimate.estimates(
                _event_of(row),
                estimate.Age(row.age_years, row.age_source),
                row.study_description,
                table,
                regions,
            )
        ]
        if added:
            await conn.execute(insert(dose_estimates), added)
    events = len({row["event_fk"] for row in added})
    return Recomputed(table.id, events, len(added), len(done))


def _event_of(row) -> rdsr.CtEvent:
    """The recorded event, as the estimate reads it."""
    return rdsr.CtEvent(
        uid=row.event_uid,
        target_region=rdsr.Code(row.region_scheme, row.region_code, row.region_meaning)
        if row.region_code
        else None,
        protocol=row.protocol,
        acquisition_type=None,
        ctdivol_mgy=row.ctdivol,
        dlp_mgycm=row.dlp,
        phantom=rdsr.Code("DCM", row.phantom) if row.phantom else None,
        scanner_effective_dose_msv=row.scanner_e,
    )


async def _insert_once(
    conn: AsyncConnection, table: Any, unique: tuple[str, ...], values: dict[str, Any]
) -> int | None:
    """Insert a row unless one with the same ``unique`` columns exists (another node may have
    written it since we looked); the new row's id, or None."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(conn.dialect.name)
    if dialect is None:  # another engine: rely on the check already made
        return (await conn.execute(insert(table).values(**values))).inserted_primary_key[0]
    statement = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(unique))
        .returning(table.c.id)
    )
    return (await conn.execute(statement)).scalar()


async def _insert_all_once(
    conn: AsyncConnection, table: Any, unique: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    """Insert the rows, skipping any whose ``unique`` columns another node wrote meanwhile."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(conn.dialect.name)
    if dialect is None:  # another engine: rely on the check already made
        await conn.execute(insert(table), rows)
        return
    await conn.execute(
        dialect.insert(table).on_conflict_do_nothing(index_elements=list(unique)), rows
    )
