"""Blobs no index row names, and temp files no upload will finish: what a crash leaves.

A crash between the blob rename and the index commit leaves a whole blob that no row names;
one during an upload leaves a temp file. Both are cleared at start-up and by
``tessera verify --repair``, which may run beside a serving hub, so nothing in flight is
touched:

- a blob's mtime is when the store last took it (``BlobStore.commit`` sets it, and touches an
  existing blob an identical ingest reuses); blobs and temp files younger than the grace period
  are left alone;
- an old candidate is moved to quarantine first, then checked again: if an ingest touched it
  meanwhile, or an index row names it now, it goes back. An ingest that reuses the blob after
  the move finds it gone and stores its own copy, so no committed row names a blob that the
  move took away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive.index import instances
from hub.archive.store import BlobStore

log = logging.getLogger(__name__)

GRACE_SECONDS = 3600.0  # an ingest takes a blob and commits its row within seconds


def young(path: Path, grace: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < grace
    except FileNotFoundError:
        return True  # gone meanwhile: nothing to do with it


async def named_hashes(engine: AsyncEngine) -> set[str]:
    """Every sha256 an index row names, as of this call."""
    async with engine.connect() as conn:
        return set((await conn.scalars(select(instances.c.sha256).distinct())).all())


async def is_named(engine: AsyncEngine, sha: str) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.scalar(select(exists().where(instances.c.sha256 == sha))))


async def unnamed_blobs(engine: AsyncEngine, store: BlobStore) -> list[str]:
    """Blobs that no index row names, as of this call."""
    named = await named_hashes(engine)
    loop = asyncio.get_running_loop()
    stored = await loop.run_in_executor(None, lambda: set(store.all_hashes()))
    return sorted(stored - named)


async def quarantine(
    engine: AsyncEngine,
    store: BlobStore,
    quarantine_dir: Path,
    candidates: list[str],
    *,
    grace: float = GRACE_SECONDS,
    lock: asyncio.Lock | None = None,
) -> list[str]:
    """Move the old orphans among ``candidates`` to quarantine; returns those moved.

    ``lock``: the ingest lock of this process, held so that no ingest of this process runs
    between a move and its recheck (other processes are covered by the mtime protocol).
    """
    loop = asyncio.get_running_loop()
    moved = []
    async with lock or contextlib.nullcontext():
        for sha in candidates:
            source, parked = store.path(sha), quarantine_dir / sha
            if not await loop.run_in_executor(None, _park, source, parked, grace):
                continue
            if young(parked, grace) or await is_named(engine, sha):
                await loop.run_in_executor(None, _unpark, parked, source)
                continue
            store.forget(sha)
            moved.append(sha)
    if moved:
        log.warning("moved %d orphan blob(s) to %s", len(moved), quarantine_dir)
    return moved


def _park(source: Path, parked: Path, grace: float) -> bool:
    if young(source, grace):
        return False
    parked.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, parked)  # atomic: an ingest sees the blob, or sees it gone
    except FileNotFoundError:
        return False
    return True


def _unpark(parked: Path, source: Path) -> None:
    # FileExistsError: an ingest stored the same bytes again meanwhile; that copy is as good.
    with contextlib.suppress(FileExistsError):
        os.link(parked, source)
    parked.unlink()


async def clear_at_start(
    engine: AsyncEngine, store: BlobStore, quarantine_dir: Path, grace: float = GRACE_SECONDS
) -> None:
    """Start-up: temp files and orphan blobs older than the grace period (a command such as
    ``tessera import`` may be writing beside the starting hub)."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, store.clear_temp, grace)
    await quarantine(engine, store, quarantine_dir, await unnamed_blobs(engine, store), grace=grace)
