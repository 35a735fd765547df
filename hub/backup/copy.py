"""Copying stored bytes between two stores, hashed on the way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from hub.archive.blobs import BlobMissing, BlobStore
from hub.backup.manifest import BlobRef

T = TypeVar("T")


class Damaged(Exception):
    """A blob whose bytes are missing or not what they should be."""


def damage(sha256: str, sop_uids: Iterable[str], reason: str) -> dict:
    """How a damaged blob is reported: with the SOP instances it holds."""
    return {"sha256": sha256, "sop_instance_uids": list(sop_uids), "reason": reason}


async def copy_blob(
    source: BlobStore, dest: BlobStore, name: str, *, expect: str | None
) -> BlobRef:
    """Copy the stored bytes of ``name``; their hash must be ``expect`` (when given)."""
    spool = await asyncio.to_thread(dest.spool)
    try:
        try:
            async for block in source.stream(name):
                await asyncio.to_thread(spool.write, block)
        except (BlobMissing, FileNotFoundError):
            raise Damaged(f"blob {name} is missing") from None
        stored, size = await asyncio.to_thread(spool.finish)
        if expect is not None and stored != expect:
            raise Damaged(f"blob {name} does not hash to what was stored (bit rot or tampering)")
        await dest.put(spool, name=name)
    finally:
        await asyncio.to_thread(spool.discard)
    return BlobRef(name, size, stored)


async def in_parallel(
    items: Iterable[T], work: Callable[[T], Awaitable[None]], parallel: int
) -> None:
    """Run ``work`` on every item, ``parallel`` at a time, in the items' order of start."""
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            await work(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(max(1, parallel))))
