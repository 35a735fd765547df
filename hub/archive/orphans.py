"""Blobs no index row names, and spools no upload will finish: what a crash leaves.

A crash between storing an object and the index commit, or an object refused after it was
stored, leaves a whole blob that no row names; one during an upload leaves a spool. Both are
cleared at start-up and by ``tessera verify --repair``, which may run beside a serving hub, so
nothing in flight is touched:

- a blob's ``modified`` time is when the store last took it (``BlobStore.put`` sets it, and
  refreshes it on an existing blob an identical ingest reuses); blobs and spools younger than
  the grace period are left alone;
- an old candidate is parked first (``Parking.park``: out of reach of readers and of ``put``,
  and refused if it was touched during the move), then checked against the index again: if a
  row names it now, it goes back. A put that reuses the blob after the move finds it gone and
  stores its own copy, so no committed row names a blob that the repair took away.

A store that cannot park (a remote store) has its orphans removed by its own janitor; here
they are only reported.

Only one node at a time removes orphans: the caller holds that duty and hands its ``Guard``
(``hub.archive.guard``), which every batch of parks passes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive.blobs import BlobStore, Parking
from hub.archive.blobs.configured import s3_of
from hub.archive.guard import UNGUARDED, Guard, batches
from hub.archive.index import instances

log = logging.getLogger(__name__)

GRACE_SECONDS = 3600.0  # an ingest takes a blob and commits its row within seconds


async def named_hashes(engine: AsyncEngine) -> set[str]:
    """Every sha256 an index row names, as of this call."""
    async with engine.connect() as conn:
        return set((await conn.scalars(select(instances.c.sha256).distinct())).all())


async def is_named(engine: AsyncEngine, sha: str) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.scalar(select(exists().where(instances.c.sha256 == sha))))


async def unnamed_blobs(
    engine: AsyncEngine, store: BlobStore, *, older_than: float = 0.0
) -> list[str]:
    """Blobs that no index row names, as of this call; with ``older_than``, only those the
    store took longer ago than that."""
    named = await named_hashes(engine)
    now = time.time()
    stored = [
        info.sha256
        async for info in store.iterate()
        if info.sha256 not in named and now - info.modified >= older_than
    ]
    return sorted(stored)


async def quarantine(
    engine: AsyncEngine,
    store: BlobStore,
    candidates: list[str],
    *,
    grace: float = GRACE_SECONDS,
    lock: asyncio.Lock | None = None,
    guard: Guard = UNGUARDED,
) -> list[str]:
    """Park the old orphans among ``candidates``, a guarded batch at a time; returns those
    parked (a ``LeaseLost`` of the guard ends the work, leaving the rest in place).

    ``lock``: the ingest lock of this process, held so that no index transaction of this
    process runs between a park and its recheck (other processes are covered by the
    ``modified`` protocol).
    """
    if not isinstance(store, Parking):
        return []
    moved = []
    async with lock or contextlib.nullcontext():
        for batch in batches(candidates):
            async with guard.batch():
                for sha in batch:
                    guard.check()
                    if not await store.park(sha, grace):
                        continue
                    if await is_named(engine, sha):
                        await store.unpark(sha)
                        continue
                    moved.append(sha)
    if moved:
        log.warning("quarantined %d orphan blob(s)", len(moved))
    return moved


async def quarantine_old(
    engine: AsyncEngine,
    store: BlobStore,
    *,
    grace: float = GRACE_SECONDS,
    lock: asyncio.Lock | None = None,
    guard: Guard = UNGUARDED,
) -> list[str]:
    """The start-up scan: park orphan blobs older than the grace period (a command such as
    ``tessera import`` may be writing beside the hub). A bucket's orphans are left to the
    janitor's sweep (``blobs.configured.sweep_bucket``): listing a bucket takes a while."""
    if s3_of(store) is not None or not isinstance(store, Parking):
        return []
    candidates = await unnamed_blobs(engine, store, older_than=grace)
    return await quarantine(engine, store, candidates, grace=grace, lock=lock, guard=guard)
