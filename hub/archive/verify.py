"""Consistency check between the index and the blob store, with repair.

Rows whose blob is missing or altered are data loss and are reported (never silently dropped);
blobs no row refers to are orphans of an interrupted ingest and are moved to quarantine.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from hub.archive.archive import Archive
from hub.archive.index import instances


@dataclass
class Report:
    checked: int = 0
    missing: list[str] = field(default_factory=list)  # sop uids whose blob is gone
    corrupt: list[str] = field(default_factory=list)  # sop uids whose blob hash differs
    orphans: list[str] = field(default_factory=list)  # blob hashes no row refers to
    temp_files: int = 0
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.missing or self.corrupt or self.orphans or self.temp_files)


def _scan(archive: Archive, rows: list, deep: bool) -> Report:
    report = Report(temp_files=len(list(archive.store.tmp_dir.glob("*.part"))))
    referenced = set()
    for sop_uid, sha in rows:
        report.checked += 1
        referenced.add(sha)
        if not archive.store.exists(sha):
            report.missing.append(sop_uid)
        elif deep and archive.store.hash_of(sha) != sha:
            report.corrupt.append(sop_uid)
    report.orphans = sorted(set(archive.store.all_hashes()) - referenced)
    return report


def _repair(archive: Archive, report: Report) -> None:
    quarantine = archive.settings.data_dir / "quarantine"
    for sha in report.orphans:
        quarantine.mkdir(parents=True, exist_ok=True)
        shutil.move(str(archive.store.path(sha)), str(Path(quarantine) / sha))
    archive.store.clear_temp()
    report.repaired = True


async def verify(archive: Archive, *, deep: bool = True, repair: bool = False) -> Report:
    import asyncio

    async with archive.engine.connect() as conn:
        rows = (await conn.execute(select(instances.c.sop_uid, instances.c.sha256))).all()
    loop = asyncio.get_running_loop()
    report = await loop.run_in_executor(None, _scan, archive, rows, deep)
    if repair and (report.orphans or report.temp_files):
        await loop.run_in_executor(None, _repair, archive, report)
    return report
