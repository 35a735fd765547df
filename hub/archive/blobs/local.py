"""The blob store on a local directory.

A blob is named by the sha256 of its bytes and lives at ``sha[:2]/sha[2:4]/sha``. A spool
is a temp file in the same file system, read back against the hash taken while it was
written, fsynced, then renamed into place, so a crash leaves either no blob or a whole one. A blob's mtime is when the store last took it: ``put`` sets
it, and touches an existing blob it reuses (``hub.archive.orphans`` relies on this).

Reads go through a bounded cache of open descriptors. A small range is one ``pread`` done
on the event loop: it is served from the page cache in microseconds, which costs less than
a hop to an executor. Anything larger runs in an executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

from hub.archive.blobs.openfiles import OpenFiles
from hub.archive.blobs.protocol import CHUNK, BlobInfo, BlobMissing, Spool
from hub.archive.blobs.spool import FileSpool, clear_spools

INLINE_READ_LIMIT = 1 << 20

T = TypeVar("T")


class LocalBlobStore:
    def __init__(
        self,
        root: Path,
        tmp_dir: Path,
        *,
        quarantine_dir: Path | None = None,
        open_files: int = 128,
        inline_read_limit: int = INLINE_READ_LIMIT,
    ) -> None:
        self.root = root
        self.tmp_dir = tmp_dir
        self.quarantine_dir = quarantine_dir or root.parent / "quarantine"
        self.inline_read_limit = inline_read_limit
        root.mkdir(parents=True, exist_ok=True)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self._files: OpenFiles[str] = OpenFiles(open_files)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    # -- writes -------------------------------------------------------------------------
    def spool(self) -> FileSpool:
        return FileSpool(self.tmp_dir)

    async def put(self, spool: Spool, *, name: str | None = None) -> bool:
        if not isinstance(spool, FileSpool):
            raise TypeError(f"a local store takes its own spools, not {type(spool).__name__}")
        return await _off_loop(self._put, spool, name)

    def _put(self, spool: FileSpool, name: str | None) -> bool:
        written, _ = spool.finish()
        sha256 = name or written
        if self._claim_existing(sha256):
            spool.discard()
            return False
        try:
            spool.check(sha256)
            self._commit(spool.path, sha256)
        except BaseException:
            spool.discard()
            raise
        spool.taken()
        return True

    async def put_bytes(self, data: bytes) -> str:
        def write() -> str:
            spool = self.spool()
            try:
                spool.write(data)
            except BaseException:
                spool.discard()
                raise
            sha256 = spool.finish()[0]
            self._put(spool, None)
            return sha256

        return await _off_loop(write)

    def _commit(self, temp: Path, sha256: str) -> None:
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(temp, 0o444)
        os.utime(temp)  # a blob's mtime is when the store took it
        os.replace(temp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _claim_existing(self, sha256: str) -> bool:
        """Whether the blob is stored, touching it for a write that reuses it: a repair
        running beside this process then spares it, or has just parked it, and the write
        stores its own copy."""
        try:
            os.utime(self.path(sha256))
        except FileNotFoundError:
            return False
        except PermissionError:  # a blob this user does not own (restored by another)
            return self.path(sha256).exists()
        return True

    async def delete(self, sha256: str) -> None:
        self._close_fd(sha256)
        await _off_loop(partial(self.path(sha256).unlink, missing_ok=True))

    # -- reads --------------------------------------------------------------------------
    async def exists(self, sha256: str) -> bool:
        return await _off_loop(self.path(sha256).is_file)

    async def size(self, sha256: str) -> int:
        return await _off_loop(self._size, sha256)

    def _size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise BlobMissing(f"no blob {sha256}") from None

    async def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        if length <= self.inline_read_limit:
            return self._pread(sha256, offset, length)
        return await _off_loop(self._pread, sha256, offset, length)

    async def read_ranges(self, sha256: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        def read() -> list[bytes]:
            return [self._pread(sha256, offset, length) for offset, length in ranges]

        if sum(length for _, length in ranges) <= self.inline_read_limit:
            return read()
        return await _off_loop(read)

    async def stream(self, sha256: str, chunk: int = CHUNK) -> AsyncIterator[bytes]:
        offset = 0
        while block := await _off_loop(self._pread, sha256, offset, chunk):
            yield block
            offset += len(block)

    @asynccontextmanager
    async def materialize(self, sha256: str) -> AsyncIterator[Path]:
        path = self.path(sha256)
        if not await _off_loop(path.is_file):
            raise BlobMissing(f"no blob {sha256}")
        yield path

    async def iterate(self) -> AsyncIterator[BlobInfo]:
        for info in await _off_loop(self._scan):
            yield info

    def _scan(self) -> list[BlobInfo]:
        found = []
        for p in self.root.glob("??/??/*"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            if p.is_file():
                found.append(BlobInfo(p.name, st.st_size, st.st_mtime))
        return found

    def _pread(self, sha256: str, offset: int, length: int) -> bytes:
        with self._files.use(sha256, self._open) as held:
            return os.pread(held.fd, length, offset)

    def _open(self, sha256: str) -> int:
        try:
            return os.open(self.path(sha256), os.O_RDONLY)
        except FileNotFoundError:
            raise BlobMissing(f"no blob {sha256}") from None

    def _close_fd(self, sha256: str) -> None:
        self._files.forget(lambda key: key == sha256)

    # -- housekeeping -------------------------------------------------------------------
    async def clear_spools(self, older_than: float = 0.0) -> int:
        return await _off_loop(clear_spools, self.tmp_dir, older_than)

    async def park(self, sha256: str, grace: float) -> bool:
        parked = await _off_loop(self._park, sha256, grace)
        if parked:
            self._close_fd(sha256)
        return parked

    def _park(self, sha256: str, grace: float) -> bool:
        source, parked = self.path(sha256), self.quarantine_dir / sha256
        if _young(source, grace):
            return False
        parked.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(source, parked)  # atomic: a put sees the blob, or sees it gone
        except FileNotFoundError:
            return False
        if _young(parked, grace):  # a put touched it between the check and the move
            self._unpark(sha256)
            return False
        return True

    async def unpark(self, sha256: str) -> None:
        await _off_loop(self._unpark, sha256)

    def _unpark(self, sha256: str) -> None:
        parked = self.quarantine_dir / sha256
        # FileExistsError: a put stored the same bytes again meanwhile; that copy is as good.
        with contextlib.suppress(FileExistsError):
            os.link(parked, self.path(sha256))
        parked.unlink()

    async def close(self) -> None:
        self._files.close()


def _young(path: Path, grace: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < grace
    except FileNotFoundError:
        return True  # gone meanwhile: nothing to do with it


async def _off_loop(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
