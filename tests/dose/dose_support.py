"""Helpers for the dose tests: ingest through the archive, read the registry's rows, and make
variants of OpenREM's reports."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import select

from hub.archive import Archive, Source
from hub.dose import service
from hub.dose.tables import dose_estimates, dose_events, dose_identities, dose_reports

TABLES = (dose_identities, dose_reports, dose_events, dose_estimates)


async def open_registry(settings) -> Archive:
    archive = await Archive.open(settings)
    service.install(archive, settings)
    return archive


async def ingest(archive: Archive, path: Path) -> None:
    result = await archive.ingest_file(path, source=Source(door="import"))
    assert result.ok, (path.name, result.status, result.message)


async def rows(archive: Archive, table, *where) -> list:
    async with archive.engine.connect() as conn:
        return (await conn.execute(select(table).where(*where).order_by(table.c.id))).all()


async def snapshot(archive: Archive) -> dict[str, list]:
    """Every row of the registry, without the times rows were written."""
    out = {}
    for table in TABLES:
        keep = [c for c in table.c if c.name not in ("created_at", "recorded_at", "computed_at")]
        async with archive.engine.connect() as conn:
            out[table.name] = (await conn.execute(select(*keep).order_by(table.c.id))).all()
    return out


def items(ds: Dataset, scheme: str, value: str):
    """Every content item of the SR tree whose concept name is (value, scheme)."""
    for item in ds.get("ContentSequence", []):
        name = item.get("ConceptNameCodeSequence")
        if name and name[0].CodingSchemeDesignator == scheme and name[0].CodeValue == value:
            yield item
        yield from items(item, scheme, value)


def as_new_study(ds: Dataset) -> Dataset:
    """The report as another study: new study, series, instance and irradiation event UIDs."""
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for item in items(ds, "DCM", "113769"):
        item.UID = generate_uid()
    return ds


def write(ds: Dataset, folder: Path, name: str) -> Path:
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return path


def read(path: Path) -> Dataset:
    return pydicom.dcmread(path)
