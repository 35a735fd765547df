"""Resumable uploads of large files: chunks are streamed to disk at an offset, never held whole.

The bytes received so far are the size of the file on disk, so a client that lost its connection
asks for that number and carries on from there, even across a server restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import StreamReader
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.jobs.tables import uploads

CHUNK_SIZE = 8 * 1024 * 1024
READ_SIZE = 1024 * 1024
DICOM_MAGIC_OFFSET = 128
ID_FIELDS = (
    "patient_id",
    "patient_name",
    "patient_birth_date",
    "patient_sex",
    "accession",
    "study_uid",
    "study_description",
    "referring_physician",
    "specimen_id",
)


class UploadError(Exception):
    """A request the upload store refuses; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass
class Upload:
    id: str
    filename: str
    size: int
    received: int
    kind: str
    status: str
    fields: dict
    actor: str | None
    path: Path

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "filename": self.filename,
            "size": self.size,
            "received": self.received,
            "status": self.status,
            "kind": self.kind,
            "chunk_size": CHUNK_SIZE,
            "fields": self.fields,
        }


def safe_filename(name: str) -> str:
    """Keep the base name and its suffix (slide readers go by the suffix); drop anything risky."""
    base = Path(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")
    return cleaned[:200] or "upload.bin"


def is_dicom(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(DICOM_MAGIC_OFFSET)
        return f.read(4) == b"DICM"


@dataclass(frozen=True)
class Quota:
    """What one user may have receiving at once; None: no limit."""

    open_uploads: int | None = None
    declared_bytes: int | None = None


class UploadStore:
    def __init__(
        self, engine: AsyncEngine, root: Path, max_bytes: int, quota: Quota | None = None
    ) -> None:
        self.engine = engine
        self.root = root
        self.max_bytes = max_bytes
        self.quota = quota or Quota()
        self._busy: set[str] = set()
        self._creating = asyncio.Lock()  # the quota check and the insert are one step

    async def create(self, filename: str, size: int, fields: dict, actor: str | None) -> Upload:
        if not filename:
            raise UploadError(400, "filename is required")
        if size <= 0:
            raise UploadError(400, "size must be a positive number of bytes")
        if size > self.max_bytes:
            raise UploadError(413, f"file of {size} bytes exceeds the limit of {self.max_bytes}")
        upload_id = secrets.token_hex(12)
        name = safe_filename(filename)
        path = self._path(upload_id, name)
        now = time.time()
        clean = {k: str(v).strip() for k, v in fields.items() if v not in (None, "")}
        async with self._creating:
            await self._check_quota(actor, size)
            await asyncio.to_thread(_create_empty, path)
            async with self.engine.begin() as conn:
                await conn.execute(
                    uploads.insert().values(
                        id=upload_id,
                        filename=name,
                        size=size,
                        kind="",
                        status="receiving",
                        fields=json.dumps(clean),
                        actor=actor,
                        created_at=now,
                        updated_at=now,
                    )
                )
        return Upload(upload_id, name, size, 0, "", "receiving", clean, actor, path)

    async def _check_quota(self, actor: str | None, size: int) -> None:
        async with self.engine.connect() as conn:
            count, declared = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(uploads.c.size), 0)).where(
                        uploads.c.actor == actor
                        if actor is not None
                        else uploads.c.actor.is_(None),
                        uploads.c.status == "receiving",
                    )
                )
            ).one()
        limit = self.quota.open_uploads
        if limit is not None and count >= limit:
            raise UploadError(
                429, f"{count} uploads are open; finish or discard one first (limit {limit})"
            )
        limit = self.quota.declared_bytes
        if limit is not None and declared + size > limit:
            raise UploadError(
                413,
                f"open uploads would total {declared + size} bytes, over the limit of {limit}",
            )

    async def expire_idle(self, idle_seconds: float) -> int:
        """Remove uploads still receiving that nobody touched for ``idle_seconds``, with their
        files; returns how many."""
        cutoff = time.time() - idle_seconds
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(uploads.c.id, uploads.c.filename).where(
                        uploads.c.status == "receiving", uploads.c.updated_at < cutoff
                    )
                )
            ).all()
        expired = 0
        for upload_id, filename in rows:
            if upload_id in self._busy:
                continue
            await asyncio.to_thread(shutil.rmtree, self._path(upload_id, filename).parent, True)
            await self._touch(upload_id, status="expired")
            expired += 1
        return expired

    async def get(self, upload_id: str) -> Upload:
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(uploads).where(uploads.c.id == upload_id)))
                .mappings()
                .first()
            )
        if row is None or row["status"] in ("discarded", "consumed", "expired"):
            raise UploadError(404, f"no upload {upload_id}")
        path = self._path(row["id"], row["filename"])
        received = await asyncio.to_thread(_size_on_disk, path)
        return Upload(
            row["id"],
            row["filename"],
            row["size"],
            received,
            row["kind"],
            row["status"],
            json.loads(row["fields"]),
            row["actor"],
            path,
        )

    async def write_chunk(self, upload_id: str, offset: int, body: StreamReader) -> Upload:
        """Append the request body at ``offset``, which must equal the bytes already received."""
        upload = await self.get(upload_id)
        if upload.status != "receiving":
            raise UploadError(409, f"upload {upload_id} is {upload.status}")
        if upload_id in self._busy:
            raise UploadError(409, "another chunk of this upload is being written")
        if offset != upload.received:
            raise UploadError(
                409, f"offset {offset} does not match bytes received", received=upload.received
            )
        self._busy.add(upload_id)
        try:
            await self._stream_to_file(upload, offset, body)
        finally:
            self._busy.discard(upload_id)
        return await self.get(upload_id)

    async def _stream_to_file(self, upload: Upload, offset: int, body: StreamReader) -> None:
        fd = await asyncio.to_thread(os.open, upload.path, os.O_WRONLY)
        position = offset
        try:
            while data := await body.read(READ_SIZE):
                if position + len(data) > upload.size:
                    await asyncio.to_thread(os.ftruncate, fd, position)
                    raise UploadError(
                        413, f"chunk runs past the declared size of {upload.size} bytes"
                    )
                await asyncio.to_thread(os.pwrite, fd, data, position)
                position += len(data)
        finally:
            await asyncio.to_thread(os.close, fd)
        await self._touch(upload.id)

    async def mark_complete(self, upload_id: str) -> Upload:
        upload = await self.get(upload_id)
        if upload.status not in ("receiving", "complete"):
            raise UploadError(409, f"upload {upload_id} is {upload.status}")
        if upload.received != upload.size:
            raise UploadError(
                409,
                f"upload has {upload.received} of {upload.size} bytes",
                received=upload.received,
            )
        kind = "dicom" if await asyncio.to_thread(is_dicom, upload.path) else "slide"
        await self._touch(upload_id, status="complete", kind=kind)
        upload.status, upload.kind = "complete", kind
        return upload

    async def consumed(self, upload_id: str) -> None:
        """The upload became archive objects and its file was removed."""
        await self._touch(upload_id, status="consumed")

    async def discard(self, upload_id: str) -> None:
        upload = await self.get(upload_id)
        if upload_id in self._busy:
            raise UploadError(409, "a chunk of this upload is being written")
        await asyncio.to_thread(shutil.rmtree, upload.path.parent, True)
        await self._touch(upload_id, status="discarded")

    async def _touch(self, upload_id: str, **values: object) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id)
                .values(updated_at=time.time(), **values)
            )

    def _path(self, upload_id: str, filename: str) -> Path:
        return self.root / upload_id / filename


def _create_empty(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=False)


def _size_on_disk(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
