"""Where backups go: blobs in a content-addressed store, manifests beside them.

A directory target holds ``blobs/`` (a ``LocalBlobStore``: the stored bytes under their
names, which for an encrypted archive are the ciphertext), ``manifests/`` (one signed JSON
file per completed backup, written last and atomically) and ``tmp/`` (spools in flight).
The snapshot and the blob list of each backup are themselves blobs, named by their hash.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from hub.archive.blobs.local import LocalBlobStore

MANIFESTS = "manifests"
RECORDS = "records"
PUBLIC_KEY = "signing.pub"


@dataclass
class DirectoryTarget:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.blobs = LocalBlobStore(self.root / "blobs", self.root / "tmp")

    @property
    def manifest_dir(self) -> Path:
        return self.root / MANIFESTS

    async def manifest_names(self) -> list[str]:
        """Completed backups, oldest first (names sort by time)."""

        def scan() -> list[str]:
            if not self.manifest_dir.is_dir():
                return []
            return sorted(p.stem for p in self.manifest_dir.glob("*.json"))

        return await asyncio.to_thread(scan)

    async def read_manifest(self, name: str) -> bytes:
        return await asyncio.to_thread((self.manifest_dir / f"{name}.json").read_bytes)

    async def write_manifest(self, name: str, data: bytes) -> None:
        """Written to a temp file, synced, then renamed: a manifest is whole or absent."""
        await asyncio.to_thread(_write_atomically, self.manifest_dir / f"{name}.json", data)

    async def write_record(self, name: str, data: bytes) -> None:
        """A verification record, kept beside the backups it speaks of."""
        await asyncio.to_thread(_write_atomically, self.root / RECORDS / f"{name}.json", data)

    async def record_names(self, kind: str) -> list[str]:
        """The records of one kind (``verify``), oldest first (names sort by time)."""

        def scan() -> list[str]:
            folder = self.root / RECORDS
            return sorted(p.stem for p in folder.glob(f"{kind}-*.json")) if folder.is_dir() else []

        return await asyncio.to_thread(scan)

    async def read_record(self, name: str) -> bytes:
        return await asyncio.to_thread((self.root / RECORDS / f"{name}.json").read_bytes)

    async def read_public_key(self) -> str | None:
        path = self.root / PUBLIC_KEY
        return await asyncio.to_thread(path.read_text) if path.exists() else None

    async def write_public_key(self, text: str) -> None:
        await asyncio.to_thread(_write_atomically, self.root / PUBLIC_KEY, text.encode())

    async def close(self) -> None:
        await self.blobs.close()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.part")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
