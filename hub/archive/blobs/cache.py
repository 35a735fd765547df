"""A node-local read-through cache of aligned chunks, in front of any BlobStore.

Ranged reads are served from chunk files (``<dir>/ab/<sha256>.<index>``, ``chunk`` bytes each,
the last one shorter); a missing chunk is fetched whole from the inner store, with the missing
chunks of one request fetched together so that the inner store can coalesce them. Objects are
immutable, but one removed and stored again by another node may be stored as other bytes
(sealed anew under encryption at rest): a reader that finds its chunks stale (they fail
authentication) has them dropped with ``drop_cached`` and fetched again.

- **One fetch per chunk.** Within a process, requests for a chunk being fetched wait for that
  fetch. Across the reader processes of a node, the fetching process holds a claim file
  (``.claim``, created with O_EXCL, holding its pid); the others poll for the chunk to appear.
  The claim of a dead process, or one older than ``claim_timeout``, is taken over.
- **A size bound.** Room is reserved before a chunk is written, by evicting the least recently
  used chunks (a hit refreshes its file's mtime, at most once a minute), so the files of this
  process never take more than ``max_bytes``. Several processes each keep the bound from a
  rescan of the folder whenever they evict.
- **Filled at ingest.** ``put`` keeps a spool's file, so a slide viewed just after upload is
  served locally: as a whole-object file (``<sha256>.all``), a hard link to the spool made before
  the upload and put in place once the inner store has taken the object, so that no byte is
  written twice. A spool on another file system is copied into chunks after the upload instead,
  and ``fill`` does the same for any local file. Either takes at most half the cache, so one
  large upload cannot flush everything else. Reads look for the chunk file, then the whole
  file.
- ``stream`` and ``materialize`` pass through without caching.
- **Hits read inline.** Chunk files are kept open (the ``OPEN_CHUNKS`` most recent), and a
  small hit is a ``pread`` on the event loop, as in the local store.

The blocking file work runs in the default executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hub.archive.blobs.openfiles import Held, OpenFiles
from hub.archive.blobs.protocol import CHUNK, BlobInfo, BlobStore, Spool
from hub.archive.blobs.spool import FileSpool

TOUCH_EVERY = 60.0  # seconds: how stale a hit's mtime may get before it is refreshed
INLINE_READ_LIMIT = 1 << 20  # hits up to this many bytes are read on the loop (see read_ranges)
OPEN_CHUNKS = 256  # chunk files kept open for hits
LOW_WATER = 0.9  # eviction frees room down to this share of the bound
CLAIM_POLL = 0.005  # seconds between looks for a chunk another process is fetching
WHOLE = -1  # the chunk index that names an object's whole-object file


@dataclass(frozen=True, slots=True)
class Kept:
    """What ``put`` keeps of a spool while the inner store uploads it: a hard link to the
    spool's file (with room reserved for it), or the file held open to be copied in chunks."""

    size: int
    link: Path | None = None
    source: BinaryIO | None = None


@dataclass(frozen=True, slots=True)
class CacheSettings:
    directory: Path
    max_bytes: int = 8 << 30
    chunk: int = CHUNK
    claim_timeout: float = 10.0


class ChunkCache:
    def __init__(self, inner: BlobStore, settings: CacheSettings) -> None:
        self.inner = inner
        self.settings = settings
        self.chunk = settings.chunk
        settings.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.directory, 0o700)
        self._inflight: dict[tuple[str, int], asyncio.Future[bytes]] = {}
        self._lock = threading.Lock()  # guards _used and the reservations, across threads
        self._used: int | None = None  # bytes in the folder or reserved, as this process counts
        self._reserved = 0  # bytes reserved for chunks being written
        self._tasks: set[asyncio.Task[dict[int, bytes]]] = set()
        self._files: OpenFiles[tuple[str, int]] = OpenFiles(OPEN_CHUNKS)

    # -- reads -------------------------------------------------------------------
    async def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        return (await self.read_ranges(sha256, [(offset, length)]))[0]

    async def read_ranges(self, sha256: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        pieces = [list(self._pieces(o, n)) for o, n in ranges]
        wanted = sorted({index for parts in pieces for index, _, _ in parts})
        if not wanted:
            return [b"" for _ in ranges]
        loop = asyncio.get_running_loop()
        # As in the local store: a small read of an open chunk file comes from the page cache
        # in microseconds, less than a hop to an executor costs.
        if sum(e - s for parts in pieces for _, s, e in parts) <= INLINE_READ_LIMIT:
            found = self._read_local(sha256, pieces)
        else:
            found = await loop.run_in_executor(None, self._read_local, sha256, pieces)
        missing = [i for i in wanted if not all(k in found for k in _keys(pieces, i))]
        chunks = await self._chunks(sha256, missing) if missing else {}
        out = []
        for parts in pieces:
            blocks = [
                found[(i, s, e)] if (i, s, e) in found else chunks[i][s:e] for i, s, e in parts
            ]
            out.append(b"".join(blocks))
        return out

    def _pieces(self, offset: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(chunk index, start, end within the chunk) covering a range."""
        end = offset + max(length, 0)
        while offset < end:
            index, start = divmod(offset, self.chunk)
            stop = min(self.chunk, start + end - offset)
            yield index, start, stop
            offset += stop - start

    def _read_local(
        self, sha: str, pieces: list[list[tuple[int, int, int]]]
    ) -> dict[tuple[int, int, int], bytes]:
        found: dict[tuple[int, int, int], bytes] = {}
        for index in {i for parts in pieces for i, _, _ in parts}:
            keys = _keys(pieces, index)
            with contextlib.suppress(FileNotFoundError):  # not cached
                found.update(self._pread(sha, index, keys))
        return found

    def _pread(
        self, sha: str, index: int, keys: list[tuple[int, int, int]]
    ) -> dict[tuple[int, int, int], bytes]:
        """The pieces of one chunk from its chunk file, else from the whole-object file (first,
        if that one is open already: a failed open of the chunk file on every read costs more
        than the read)."""
        whole = (sha, WHOLE)
        if whole not in self._files:
            try:
                return self._pread_file((sha, index), 0, keys)
            except FileNotFoundError:
                pass
        return self._pread_file(whole, index * self.chunk, keys)

    def _pread_file(
        self, key: tuple[str, int], base: int, keys: list[tuple[int, int, int]]
    ) -> dict[tuple[int, int, int], bytes]:
        with self._files.use(key, self._open_chunk) as held:
            self._touch(held)
            return {(i, s, e): os.pread(held.fd, e - s, base + s) for i, s, e in keys}

    def _open_chunk(self, key: tuple[str, int]) -> int:
        fd = os.open(self._path(*key), os.O_RDONLY)
        if time.time() - os.fstat(fd).st_mtime <= TOUCH_EVERY:
            return fd
        with contextlib.suppress(OSError):
            os.utime(fd)
        return fd

    @staticmethod
    def _touch(held: Held) -> None:
        """Refresh a hit chunk's mtime now and then, so that eviction takes the least recently
        used."""
        now = time.time()
        if now - held.touched > TOUCH_EVERY:
            held.touched = now
            with contextlib.suppress(OSError):
                os.utime(held.fd)

    def _close_chunk(self, name: str) -> None:
        """Close the open file of an evicted chunk (``<sha256>.<index>``) or whole object
        (``<sha256>.all``), so that its space is freed. (A file evicted by another process
        stays open here until it ages out of the ``OPEN_CHUNKS`` most recent.)"""
        sha, _, index = name.partition(".")
        if index.isdigit() or index == "all":
            key = (sha, int(index) if index.isdigit() else WHOLE)
            self._files.forget(lambda held: held == key)

    def _close_chunks(self, sha: str | None = None) -> None:
        """Close the open chunk files of one object (of every object without ``sha``)."""
        self._files.forget(lambda key: sha is None or key[0] == sha)

    async def _chunks(self, sha: str, indexes: list[int]) -> dict[int, bytes]:
        """Whole chunks, each fetched once however many requests want it. The fetch is a task
        of its own, so a request that goes away does not cancel it for the others."""
        loop = asyncio.get_running_loop()
        mine = [i for i in indexes if (sha, i) not in self._inflight]
        if mine:
            for i in mine:
                self._inflight[(sha, i)] = loop.create_future()
            task = asyncio.ensure_future(self._load(sha, mine))
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._settle(sha, mine, t))
        futures = {i: self._inflight[(sha, i)] for i in indexes}  # before any await
        return {i: await asyncio.shield(f) for i, f in futures.items()}

    def _settle(self, sha: str, indexes: list[int], task: asyncio.Task[dict[int, bytes]]) -> None:
        self._tasks.discard(task)
        for i in indexes:
            future = self._inflight.pop((sha, i))
            if task.cancelled():
                future.cancel()
            elif (error := task.exception()) is not None:
                future.set_exception(error)
                future.exception()  # retrieved: the waiters re-raise it, none is required to
            else:
                future.set_result(task.result()[i])

    async def _load(self, sha: str, indexes: list[int]) -> dict[int, bytes]:
        """Read from the folder what appeared meanwhile; fetch what this process claims; wait
        for what another process claimed."""
        loop = asyncio.get_running_loop()
        loaded: dict[int, bytes] = {}
        pending = list(indexes)
        deadline = time.monotonic() + self.settings.claim_timeout
        while pending:
            local, claimed = await loop.run_in_executor(None, self._settle_on_disk, sha, pending)
            loaded.update(local)
            if claimed:
                loaded.update(await self._fetch(sha, claimed))
            pending = [i for i in pending if i not in loaded]
            if pending and time.monotonic() > deadline:
                # The other process is stuck: fetch without caching rather than wait on.
                loaded.update(self._split(pending, await self._fetch_inner(sha, pending)))
                break
            if pending:
                await asyncio.sleep(CLAIM_POLL)
        return loaded

    def _settle_on_disk(self, sha: str, indexes: list[int]) -> tuple[dict[int, bytes], list[int]]:
        """(chunks already on disk, the indexes this process now claims)."""
        local: dict[int, bytes] = {}
        claimed = []
        for index in indexes:
            path = self._path(sha, index)
            with contextlib.suppress(FileNotFoundError):
                local[index] = path.read_bytes()
                continue
            if not self._claim(path):
                continue
            # The claim's holder before this one may have stored the chunk and let go between
            # the look above and the claim.
            try:
                local[index] = path.read_bytes()
            except FileNotFoundError:
                claimed.append(index)
            else:
                self._release(sha, [index])
        return local, claimed

    def _claim(self, path: Path) -> bool:
        """Claim the fetch of a chunk for this process (O_EXCL), taking over the claim of a
        process that has died or has held it longer than ``claim_timeout``."""
        claim = path.with_name(path.name + ".claim")
        claim.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                holder = self._holder(claim)
                if holder == "live":
                    return False
                if holder == "stale":
                    claim.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True
        return False

    def _holder(self, claim: Path) -> str:
        """The state of a claim held by another: live, stale, or gone (released meanwhile)."""
        try:
            age = time.time() - claim.stat().st_mtime
            pid = claim.read_text()
        except FileNotFoundError:
            return "gone"
        if age >= self.settings.claim_timeout:
            return "stale"
        if not pid:
            return "live"  # being written by its process
        return "live" if _alive(int(pid)) else "stale"

    async def _fetch(self, sha: str, indexes: list[int]) -> dict[int, bytes]:
        loop = asyncio.get_running_loop()
        try:
            chunks = self._split(indexes, await self._fetch_inner(sha, indexes))
            await loop.run_in_executor(None, self._store_chunks, sha, chunks)
        finally:
            await loop.run_in_executor(None, self._release, sha, indexes)
        return chunks

    async def _fetch_inner(self, sha: str, indexes: list[int]) -> list[bytes]:
        return await self.inner.read_ranges(sha, [(i * self.chunk, self.chunk) for i in indexes])

    @staticmethod
    def _split(indexes: list[int], blocks: list[bytes]) -> dict[int, bytes]:
        return dict(zip(indexes, blocks, strict=True))

    def _release(self, sha: str, indexes: list[int]) -> None:
        for index in indexes:
            path = self._path(sha, index)
            path.with_name(path.name + ".claim").unlink(missing_ok=True)

    # -- the folder and its bound -------------------------------------------------
    def _path(self, sha: str, index: int) -> Path:
        return self.settings.directory / sha[:2] / f"{sha}.{'all' if index == WHOLE else index}"

    def _store_chunks(self, sha: str, chunks: dict[int, bytes]) -> None:
        for index, data in chunks.items():
            if data:
                self._store(self._path(sha, index), data)

    def _store(self, path: Path, data: bytes) -> bool:
        """Write one chunk via a temp file and a rename, within the bound."""
        if not self._reserve(len(data)):
            return False
        temp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as f:
                f.write(data)
            if path.exists():
                raise FileExistsError(path)  # filled meanwhile by another process
            os.rename(temp, path)
        except OSError:
            temp.unlink(missing_ok=True)
            self._release_room(len(data), stored=False)
            return False
        self._release_room(len(data), stored=True)
        return True

    def _reserve(self, size: int) -> bool:
        bound = self.settings.max_bytes
        if size > bound:
            return False
        with self._lock:
            if self._used is None:
                self._used = sum(size for _, size, _ in self._scan())
            if self._used + size > bound:
                self._evict(int(bound * LOW_WATER) - size)
            if self._used + size > bound:
                return False
            self._used += size
            self._reserved += size
            return True

    def _release_room(self, size: int, *, stored: bool) -> None:
        """End a reservation: its chunk is in the folder now, or was not written."""
        with self._lock:
            assert self._used is not None
            self._reserved -= size
            if not stored:
                self._used -= size

    def _evict(self, target: int) -> None:
        """Remove the least recently used chunks until the folder holds at most ``target``
        bytes (called with the lock held); recounts from the folder, which other processes
        share."""
        files = sorted(self._scan(), key=lambda f: f[2])
        used = sum(size for _, size, _ in files)
        stale = time.time() - self.settings.claim_timeout
        for path, size, mtime in files:
            if used <= target:
                break
            if path.name.endswith(".tmp") and mtime > stale:
                continue  # being written; one left by a dead process goes like a chunk
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                used -= size
            self._close_chunk(path.name)
        # Reserved chunks of this process are not (or only partly) in the folder yet.
        self._used = used + self._reserved

    def _scan(self) -> Iterator[tuple[Path, int, float]]:
        """(path, size, mtime) of every chunk and temp file in the folder."""
        for sub in os.scandir(self.settings.directory):
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                if entry.name.endswith(".claim"):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    yield Path(entry.path), st.st_size, st.st_mtime

    def used_bytes(self) -> int:
        """Bytes in the folder now (a full scan)."""
        return sum(size for _, size, _ in self._scan())

    # -- fill --------------------------------------------------------------------
    async def fill(self, sha256: str, source: Path | BinaryIO) -> int:
        """Copy the stored bytes of an object from a local file into the cache; how many
        chunks were written."""
        return await asyncio.get_running_loop().run_in_executor(None, self._fill, sha256, source)

    def _fill(self, sha: str, source: Path | BinaryIO) -> int:
        with contextlib.ExitStack() as stack:
            f = stack.enter_context(open(source, "rb")) if isinstance(source, Path) else source
            budget = self.settings.max_bytes // 2
            written = 0
            for index in range(budget // self.chunk):
                data = f.read(self.chunk)
                if not data:
                    break
                path = self._path(sha, index)
                if not path.exists() and not self._store(path, data):
                    break
                written += 1
        return written

    def forget(self, sha256: str) -> None:
        """Drop the cached chunks of one object (blocking)."""
        self._close_chunks(sha256)
        folder = self.settings.directory / sha256[:2]
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if entry.name.startswith(sha256 + ".") and not entry.name.endswith(".claim"):
                    with contextlib.suppress(FileNotFoundError):
                        size = entry.stat().st_size
                        os.unlink(entry.path)
                        with self._lock:
                            if self._used is not None:
                                self._used -= size

    async def drop_cached(self, sha256: str) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.forget, sha256)

    # -- the rest of the protocol ---------------------------------------------------
    def spool(self) -> Spool:
        return self.inner.spool()

    async def put(self, spool: Spool, *, name: str | None = None) -> bool:
        """Fills the cache with the object once the inner store has taken it, from the spool's
        file kept across the put (which consumes it). A reused object is not filled: its
        stored bytes may differ from the spool's (a sealed form, with its own nonces)."""
        if not isinstance(spool, FileSpool):
            return await self.inner.put(spool, name=name)
        loop = asyncio.get_running_loop()
        written, size = await loop.run_in_executor(None, spool.finish)
        sha = name or written
        kept = await loop.run_in_executor(None, self._keep, sha, spool.path, size)
        stored = False
        try:
            stored = await self.inner.put(spool, name=name)
        finally:
            await asyncio.shield(loop.run_in_executor(None, self._settle_kept, sha, kept, stored))
        return stored

    def _keep(self, sha: str, path: Path, size: int) -> Kept:
        if size <= self.settings.max_bytes // 2 and self._reserve(size):
            # Not named after the object until it is stored, so that no read finds it before.
            link = self._path(sha, WHOLE).with_name(f"{uuid.uuid4().hex[:8]}-{sha}.tmp")
            try:
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, link)
                return Kept(size, link=link)
            except OSError:  # another file system, or one without hard links
                self._release_room(size, stored=False)
        return Kept(size, source=open(path, "rb"))

    def _settle_kept(self, sha: str, kept: Kept, stored: bool) -> None:
        """Put the kept file in place if the inner store took the object, else let it go."""
        if stored:
            # Chunks of an earlier copy go (one too large to refresh in place is uploaded
            # again, and sealed with other nonces under encryption at rest).
            self.forget(sha)
        if kept.source is not None:
            with kept.source:
                if stored:
                    self._fill(sha, kept.source)
            return
        assert kept.link is not None
        if stored and _renamed(kept.link, self._path(sha, WHOLE)):
            self._release_room(kept.size, stored=True)
            return
        # Not stored, or the link was evicted as stale meanwhile.
        kept.link.unlink(missing_ok=True)
        self._release_room(kept.size, stored=False)

    async def put_bytes(self, data: bytes) -> str:
        return await self.inner.put_bytes(data)

    async def exists(self, sha256: str) -> bool:
        return await self.inner.exists(sha256)

    async def size(self, sha256: str) -> int:
        return await self.inner.size(sha256)

    def stream(self, sha256: str, chunk: int = CHUNK) -> AsyncIterator[bytes]:
        return self.inner.stream(sha256, chunk)

    def materialize(self, sha256: str) -> contextlib.AbstractAsyncContextManager[Path]:
        return self.inner.materialize(sha256)

    async def delete(self, sha256: str) -> None:
        await self.inner.delete(sha256)
        await self.drop_cached(sha256)

    def iterate(self) -> AsyncIterator[BlobInfo]:
        return self.inner.iterate()

    async def clear_spools(self, older_than: float = 0.0) -> int:
        return await self.inner.clear_spools(older_than)

    async def close(self) -> None:
        self._close_chunks()
        await self.inner.close()


def _renamed(source: Path, target: Path) -> bool:
    try:
        os.rename(source, target)
    except OSError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _keys(pieces: list[list[tuple[int, int, int]]], index: int) -> list[tuple[int, int, int]]:
    return [p for parts in pieces for p in parts if p[0] == index]
