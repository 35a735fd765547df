"""The provenance chain of an AI measurement report: the report, the one it replaced, and so on
back to the first analysis, each with the model, version, date and verification status that
the stored report itself records (the index finds each report, the report names the next)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread

from hub.ai.objects import SR_SOP_CLASS
from hub.archive import Archive, NotFound, ReadScope
from hub.archive.query import Query

MAX_LINKS = 1000  # a chain longer than this is cut (and says so)
ALGORITHM_NAME, ALGORITHM_VERSION = "111001", "111003"
DEVICE_UID, DEVICE_NAME = "121012", "121013"


class NotAReport(LookupError):
    """The SOP instance is not an AI measurement report the caller may read."""


async def chain(archive: Archive, sop_uid: str, scope: ReadScope) -> dict[str, Any]:
    study = await _study_of(archive, sop_uid, scope)
    links: list[dict[str, Any]] = []
    seen: set[str] = set()
    next_uid: str | None = sop_uid
    while next_uid and next_uid not in seen and len(links) < MAX_LINKS:
        seen.add(next_uid)
        report = await _report(archive, study, next_uid, scope)
        if report is None:
            if not links:
                raise NotAReport(f"{sop_uid} is not an AI measurement report")
            links[-1]["replaces_missing"] = True  # named, but not stored (or not visible)
            break
        links.append(_link(report))
        next_uid = links[-1]["replaces"]
    return {"study_uid": study, "chain": links, "complete": not next_uid or next_uid in seen}


async def _study_of(archive: Archive, sop_uid: str, scope: ReadScope) -> str:
    rows = await archive.search(
        Query(level="INSTANCE", keys={"SOPInstanceUID": sop_uid}, scope=scope)
    )
    if not rows:
        raise NotAReport(f"no instance {sop_uid}")
    return rows[0]["0020000D"]["Value"][0]


async def _report(archive: Archive, study: str, sop_uid: str, scope: ReadScope) -> Dataset | None:
    try:
        (ref,) = await archive.instances(study, sop_uid=sop_uid, scope=scope)
    except NotFound:
        return None
    if ref.sop_class_uid != SR_SOP_CLASS:
        return None
    async with archive.store.materialize(ref.sha256) as path:
        report = await asyncio.to_thread(_read, path)
    return report if _items(report, DEVICE_UID) else None  # a report with a device observer


def _read(path: Path) -> Dataset:
    with open(path, "rb") as f:
        return dcmread(f)


def _link(report: Dataset) -> dict[str, Any]:
    return {
        "sop_uid": report.SOPInstanceUID,
        "series_uid": report.SeriesInstanceUID,
        "model": _text(report, ALGORITHM_NAME) or _text(report, DEVICE_NAME),
        "version": _text(report, ALGORITHM_VERSION),
        "device_uid": _text(report, DEVICE_UID),
        "date": _date(report),
        "verification": str(report.get("VerificationFlag", "")),
        "completion": str(report.get("CompletionFlag", "")),
        "measurements": _measurements(report),
        "replaces": _predecessor(report),
    }


def _predecessor(report: Dataset) -> str | None:
    for study in report.get("PredecessorDocumentsSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            for sop in series.get("ReferencedSOPSequence", []):
                return str(sop.ReferencedSOPInstanceUID)
    return None


def _items(ds: Dataset, code: str) -> list[Dataset]:
    """The content items (at any depth) whose concept name is ``code``."""
    found = []
    for item in ds.get("ContentSequence", []):
        names = item.get("ConceptNameCodeSequence", [])
        if names and names[0].CodeValue == code:
            found.append(item)
        found += _items(item, code)
    return found


def _text(ds: Dataset, code: str) -> str | None:
    for item in _items(ds, code):
        value = item.get("TextValue") or item.get("UID")
        if value:
            return str(value)
    return None


def _measurements(report: Dataset) -> list[dict[str, Any]]:
    numbers = []
    seen: set[str] = set()
    for item in _numeric(report):
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        value = item.MeasuredValueSequence[0]
        if name not in seen:
            seen.add(name)
            unit = value.MeasurementUnitsCodeSequence[0].CodeValue
            numbers.append({"name": name, "value": float(value.NumericValue), "unit": unit})
    return numbers


def _numeric(ds: Dataset) -> list[Dataset]:
    found = []
    for item in ds.get("ContentSequence", []):
        if item.get("ValueType") == "NUM" and item.get("MeasuredValueSequence"):
            found.append(item)
        found += _numeric(item)
    return found


def _date(report: Dataset) -> str | None:
    stamp = f"{report.get('ContentDate', '')}{str(report.get('ContentTime', '')).split('.')[0]}"
    try:
        return datetime.strptime(stamp, "%Y%m%d%H%M%S").isoformat()
    except ValueError:
        return None
