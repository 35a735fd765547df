"""Consistency check between the index and the blob store, with repair.

Rows whose blob is missing or altered are data loss and are reported (never silently dropped);
blobs no row refers to are orphans of an interrupted ingest and are moved to quarantine, and
spools of interrupted uploads are removed. The repair is safe beside a serving hub: what
may still be in flight (younger than the grace period) is kept, see ``hub.archive.orphans``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from hub.archive import orphans
from hub.archive.archive import Archive
from hub.archive.blobs import BlobIntegrityError, BlobStore
from hub.archive.blobs.configured import sweep_bucket
from hub.archive.blobs.digest import stored_digest
from hub.archive.blobs.spool import count_spools
from hub.archive.guard import UNGUARDED, Guard
from hub.archive.index import instances


@dataclass
class Report:
    checked: int = 0
    missing: list[str] = field(default_factory=list)  # sop uids whose blob is gone
    corrupt: list[str] = field(default_factory=list)  # sop uids whose blob hash differs
    orphans: list[str] = field(default_factory=list)  # blob hashes no row refers to
    temp_files: int = 0
    kept: list[str] = field(default_factory=list)  # orphans spared by the repair (in flight?)
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.missing or self.corrupt or self.orphans or self.temp_files)


async def scan(archive: Archive, *, deep: bool = True) -> Report:
    async with archive.engine.connect() as conn:
        rows = (await conn.execute(select(instances.c.sop_uid, instances.c.sha256))).all()
    store = archive.store
    report = Report(temp_files=count_spools(archive.settings.tmp_dir))
    referenced = set()
    for sop_uid, sha in rows:
        report.checked += 1
        referenced.add(sha)
        if not await store.exists(sha):
            report.missing.append(sop_uid)
        elif deep and not await intact(store, sha):
            report.corrupt.append(sop_uid)
    report.orphans = sorted({info.sha256 async for info in store.iterate()} - referenced)
    return report


async def intact(store: BlobStore, sha256: str) -> bool:
    """Whether the stored bytes still hash to their name (hashing off the event loop)."""
    try:
        digest, _ = await stored_digest(store, sha256)
    except BlobIntegrityError:
        return False
    return digest == sha256


async def repair_found(
    archive: Archive,
    report: Report,
    *,
    grace: float = orphans.GRACE_SECONDS,
    guard: Guard = UNGUARDED,
) -> None:
    """Quarantine the report's orphans (on S3: the janitor removes them, and aborts abandoned
    multipart uploads) and remove old spools, sparing what is in flight. ``guard``: the
    janitor duty this process holds (``hub.archive.guard``)."""
    moved = await orphans.quarantine(
        archive.engine,
        archive.store,
        report.orphans,
        grace=grace,
        lock=archive.ingestor.lock,
        guard=guard,
    )
    swept = await sweep_bucket(archive.store, archive.engine, grace, guard)
    if swept is not None:
        moved += swept.removed
    report.kept = [sha for sha in report.orphans if sha not in moved]
    report.temp_files -= await archive.store.clear_spools(grace)
    report.repaired = True


async def verify(
    archive: Archive, *, deep: bool = True, repair: bool = False, guard: Guard = UNGUARDED
) -> Report:
    report = await scan(archive, deep=deep)
    if repair:
        await repair_found(archive, report, guard=guard)
    return report
