"""Where backups go: blobs in a content-addressed store, manifests beside them.

A target is a folder (``DirectoryTarget``) or the URL of an append-only receiver
(``hub.backup.http_target``, served by ``tessera backup-receiver``): ``open_target`` picks one.
Both answer the same calls, and a receiver keeps its folder in the same layout.

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
from typing import Any, Protocol

from hub.archive.blobs.local import LocalBlobStore
from hub.config import BackupSettings

MANIFESTS = "manifests"
RECORDS = "records"
PUBLIC_KEY = "signing.pub"
RECOVERY_KIT = "recovery-kit.json"
URL_SCHEMES = ("http://", "https://")


class TargetError(Exception):
    """The target cannot be used: unreachable, refusing the hub, or holding what it must not."""


class Target(Protocol):
    """What a backup, a verify, a restore and the status read and write."""

    blobs: Any  # the calls of the BlobStore protocol a backup makes: put, exists, stream, size

    @property
    def spool_dir(self) -> Path: ...
    async def manifest_names(self) -> list[str]: ...
    async def read_manifest(self, name: str) -> bytes: ...
    async def write_manifest(self, name: str, data: bytes) -> None: ...
    async def write_record(self, name: str, data: bytes) -> None: ...
    async def record_names(self, kind: str) -> list[str]: ...
    async def read_record(self, name: str) -> bytes: ...
    async def read_public_key(self) -> str | None: ...
    async def write_public_key(self, text: str) -> None: ...
    async def read_recovery_kit(self) -> bytes | None: ...
    async def write_recovery_kit(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


def open_target(where: str | Path, backup: BackupSettings, spool_dir: Path | None = None) -> Target:
    """The target ``where`` names: a receiver's URL (authenticated with the token in
    ``backup.token_file``; blobs spooled in ``spool_dir`` before they are sent), else a folder."""
    if str(where).startswith(URL_SCHEMES):
        from hub.backup.http_target import HttpTarget

        if backup.token_file is None:
            raise TargetError(
                f"{where} is a receiver: give its token file with TESSERA_BACKUP_TOKEN_FILE"
            )
        return HttpTarget(str(where), backup.token_file, spool_dir)
    return DirectoryTarget(Path(where))


@dataclass
class DirectoryTarget:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.blobs = LocalBlobStore(self.root / "blobs", self.root / "tmp")

    @property
    def manifest_dir(self) -> Path:
        return self.root / MANIFESTS

    @property
    def spool_dir(self) -> Path:
        return self.root / "tmp"

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

    async def read_recovery_kit(self) -> bytes | None:
        path = self.root / RECOVERY_KIT
        return await asyncio.to_thread(path.read_bytes) if path.exists() else None

    async def write_recovery_kit(self, data: bytes) -> None:
        await asyncio.to_thread(_write_atomically, self.root / RECOVERY_KIT, data)

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
