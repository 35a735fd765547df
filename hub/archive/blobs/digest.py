"""The SHA-256 and size of what a store holds under a name, hashed off the event loop."""

from __future__ import annotations

import asyncio
import hashlib

from hub.archive.blobs.protocol import BlobStore


async def stored_digest(store: BlobStore, name: str) -> tuple[str, int]:
    """(hex SHA-256, size) of the bytes the store returns for ``name``."""
    digest, size = hashlib.sha256(), 0
    async for block in store.stream(name):
        await asyncio.to_thread(digest.update, block)
        size += len(block)
    return digest.hexdigest(), size
