"""Encryption at rest: a ``BlobStore`` wrapper that seals objects before any store holds them.

The wrapper holds an inner store (the local directory, S3, a cache in front of it), which
only ever sees ciphertext. Names and sizes are those of the plaintext.

Stored layout, AES-256-GCM over fixed-size chunks, so any byte range is readable alone::

    header (32 bytes): magic "TSRAES1\\0" | chunk size u32 | plaintext size u64 | key id (8) | 0 (4)
    then per chunk:    nonce (12) | ciphertext (chunk size, the last one shorter) | tag (16)

Each chunk has a fresh random nonce and is authenticated together with the blob's name (the
sha256 of its plaintext), its index and whether it is the last, so chunks cannot be swapped,
moved to another blob, or cut off. Reading one frame decrypts only the chunks it spans.
Blobs written before encryption was switched on (no magic) are still read as they are.

Spooling: the name is the plaintext's sha256, known only once the last byte has arrived,
so the GCM chunks cannot be sealed while an object is received. Instead the spool is
encrypted as it is written, with AES-256-CTR under a random key that exists only in this
process's memory: the parser reads it back through a decrypting, seekable view, and a
crash leaves only bytes nobody can read. ``put`` then re-seals the spool into the GCM layout
through a spool of the inner store. Objects materialized for libraries that want a path are
decrypted into an anonymous file (``O_TMPFILE``), which has no name and vanishes with the
process.

All crypto runs in an executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import struct
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.archive.blobs import (
    CHUNK,
    BlobInfo,
    BlobIntegrityError,
    BlobStore,
    Cached,
    Parking,
    Spool,
)
from hub.security.keys import load_or_create, parse_key

MAGIC = b"TSRAES1\x00"
HEADER = struct.Struct(">8sIQ8s4x")
NONCE, TAG = 12, 16
DEFAULT_CHUNK = 64 * 1024
HEADER_CACHE = 4096

T = TypeVar("T")

__all__ = ["BlobIntegrityError", "EncryptedBlobStore", "load_store_key"]


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"tessera-store-key-id" + key).digest()[:8]


class EncryptedBlobStore:
    """A ``BlobStore`` around ``inner`` whose stored bytes are sealed with ``key``."""

    def __init__(
        self,
        inner: BlobStore,
        key: bytes,
        *,
        tmp_dir: Path,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        if len(key) != 32:
            raise ValueError("AES-256 needs a 32-byte key")
        self.inner = inner
        self.tmp_dir = tmp_dir
        self.chunk_size = chunk_size
        self._aead = AESGCM(key)
        self._key_id = key_id(key)
        self._headers: OrderedDict[str, tuple[int, int] | None] = OrderedDict()

    @property
    def key_id(self) -> bytes:
        """Which key seals the objects (a hash of it, also in each header): safe to record."""
        return self._key_id

    # -- writes -------------------------------------------------------------------------
    def spool(self) -> CtrSpool:
        return CtrSpool(self.inner.spool())

    async def put(self, spool: Spool, *, name: str | None = None) -> bool:
        if not isinstance(spool, CtrSpool):
            raise TypeError(f"an encrypted store takes its own spools, not {type(spool).__name__}")
        try:
            sha256 = name or spool.finish()[0]
            sealed = await _off_loop(self._seal_spool, spool, sha256)
        finally:
            await _off_loop(spool.discard)
        return await self.inner.put(sealed, name=sha256)

    async def put_bytes(self, data: bytes) -> str:
        def seal() -> tuple[str, Spool]:
            sha256 = hashlib.sha256(data).hexdigest()
            return sha256, self._seal(io.BytesIO(data), sha256, len(data))

        sha256, sealed = await _off_loop(seal)
        await self.inner.put(sealed, name=sha256)
        return sha256

    def _seal_spool(self, spool: CtrSpool, sha256: str) -> Spool:
        size = spool.finish()[1]
        with spool.reader() as plain:
            return self._seal(plain, sha256, size)

    def _seal(self, plain: BinaryIO, sha256: str, size: int) -> Spool:
        """A finished spool of the inner store holding the sealed form of ``plain``, which
        must be ``size`` bytes hashing to ``sha256``: the inner store can check only the
        sealed bytes, against the hash they get here."""
        sealed = self.inner.spool()
        digest = hashlib.sha256()
        try:
            sealed.write(HEADER.pack(MAGIC, self.chunk_size, size, self._key_id))
            count = _chunk_count(size, self.chunk_size)
            for index in range(count):
                nonce = os.urandom(NONCE)
                aad = _aad(sha256, index, index == count - 1)
                data = plain.read(self.chunk_size)
                digest.update(data)
                sealed.write(nonce + self._aead.encrypt(nonce, data, aad))
            if plain.read(1) or digest.hexdigest() != sha256:
                raise BlobIntegrityError(
                    f"the plaintext of {sha256} does not hash to its name (its spool changed "
                    "on disk after it was written); not stored"
                )
            sealed.finish()
        except BaseException:
            sealed.discard()
            raise
        return sealed

    async def delete(self, sha256: str) -> None:
        self._headers.pop(sha256, None)
        await self.inner.delete(sha256)

    # -- reads --------------------------------------------------------------------------
    async def exists(self, sha256: str) -> bool:
        return await self.inner.exists(sha256)

    async def size(self, sha256: str) -> int:
        header = await self._header(sha256)
        return await self.inner.size(sha256) if header is None else header[1]

    async def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        return (await self.read_ranges(sha256, [(offset, length)]))[0]

    async def read_ranges(self, sha256: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        header = await self._header(sha256)
        if header is None:
            return await self.inner.read_ranges(sha256, ranges)
        return await self._fresh(sha256, partial(self._open_ranges, sha256, header, ranges))

    async def _open_ranges(
        self, sha256: str, header: tuple[int, int], ranges: Sequence[tuple[int, int]]
    ) -> list[bytes]:
        chunk, size = header
        spans = [_span(offset, length, chunk, size) for offset, length in ranges]
        wanted = [s for s in spans if s is not None]
        raw = await self.inner.read_ranges(sha256, [_sealed_range(s, chunk) for s in wanted])

        def open_all() -> list[bytes]:
            sealed = iter(raw)
            out = []
            for span, (offset, length) in zip(spans, ranges, strict=True):
                if span is None:
                    out.append(b"")
                    continue
                first, last = span
                plain = self._open(sha256, header, first, last, next(sealed))
                start = offset - first * chunk
                out.append(plain[start : start + min(length, size - offset)])
            return out

        return await _off_loop(open_all)

    async def stream(self, sha256: str, chunk: int = CHUNK) -> AsyncIterator[bytes]:
        header = await self._header(sha256)
        if header is None:
            async for block in self.inner.stream(sha256, chunk):
                yield block
            return
        per_read = max(1, chunk // header[0])
        count = _chunk_count(header[1], header[0])
        for first in range(0, count, per_read):
            last = min(first + per_read, count) - 1
            block = await self._fresh(sha256, partial(self._open_span, sha256, header, first, last))
            if block:
                yield block

    async def _open_span(
        self, sha256: str, header: tuple[int, int], first: int, last: int
    ) -> bytes:
        raw = await self.inner.read_range(sha256, *_sealed_range((first, last), header[0]))
        return await _off_loop(self._open, sha256, header, first, last, raw)

    async def _fresh(self, sha256: str, read: Callable[[], Awaitable[T]]) -> T:
        """``read()``, once more if its bytes fail authentication and the inner store caches:
        a node's cache may hold chunks of an earlier copy of the object, removed and stored
        again since under other nonces. Those are dropped first; a second failure stands."""
        try:
            return await read()
        except BlobIntegrityError:
            if not isinstance(self.inner, Cached):
                raise
            await self.inner.drop_cached(sha256)
        return await read()

    @asynccontextmanager
    async def materialize(self, sha256: str) -> AsyncIterator[Path]:
        header = await self._header(sha256)
        if header is None:
            async with self.inner.materialize(sha256) as path:
                yield path
            return
        fd = await _off_loop(_anonymous_file, self.tmp_dir)
        try:
            async for block in self.stream(sha256):
                await _off_loop(_write_all, fd, block)
            yield Path(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)

    async def iterate(self) -> AsyncIterator[BlobInfo]:
        async for info in self.inner.iterate():
            yield info

    # -- housekeeping -------------------------------------------------------------------
    async def clear_spools(self, older_than: float = 0.0) -> int:
        return await self.inner.clear_spools(older_than)

    async def park(self, sha256: str, grace: float) -> bool:
        if not isinstance(self.inner, Parking):
            return False
        self._headers.pop(sha256, None)
        return await self.inner.park(sha256, grace)

    async def unpark(self, sha256: str) -> None:
        if isinstance(self.inner, Parking):
            await self.inner.unpark(sha256)

    async def close(self) -> None:
        await self.inner.close()

    # -- internals ----------------------------------------------------------------------
    async def _header(self, sha256: str) -> tuple[int, int] | None:
        """(chunk size, plaintext size), or None for a blob stored unencrypted."""
        if sha256 in self._headers:
            self._headers.move_to_end(sha256)
            return self._headers[sha256]
        raw = await self.inner.read_range(sha256, 0, HEADER.size)
        if len(raw) < HEADER.size or raw[:8] != MAGIC:
            header = None
        else:
            _, chunk, size, kid = HEADER.unpack(raw)
            if kid != self._key_id:
                raise BlobIntegrityError(f"blob {sha256} was encrypted with another key")
            header = (chunk, size)
        self._headers[sha256] = header
        if len(self._headers) > HEADER_CACHE:
            self._headers.popitem(last=False)
        return header

    def _open(
        self, sha256: str, header: tuple[int, int], first: int, last: int, raw: bytes
    ) -> bytes:
        """The plaintext of chunks ``first``..``last``, given their sealed bytes."""
        chunk, size = header
        record = NONCE + chunk + TAG
        count = _chunk_count(size, chunk)
        out = []
        for n, index in enumerate(range(first, last + 1)):
            piece = raw[n * record : (n + 1) * record]
            if len(piece) < NONCE + TAG:
                raise BlobIntegrityError(f"blob {sha256} is cut short before chunk {index}")
            try:
                out.append(
                    self._aead.decrypt(
                        piece[:NONCE], piece[NONCE:], _aad(sha256, index, index == count - 1)
                    )
                )
            except InvalidTag:
                raise BlobIntegrityError(
                    f"blob {sha256} chunk {index} failed authentication"
                ) from None
        return b"".join(out)


class CtrSpool:
    """A spool of the inner store holding AES-256-CTR ciphertext under a key held only here."""

    def __init__(self, inner: Spool) -> None:
        self.inner = inner
        self._key = os.urandom(32)
        self._iv = os.urandom(16)
        self._encryptor = Cipher(algorithms.AES(self._key), modes.CTR(self._iv)).encryptor()
        self._digest = hashlib.sha256()
        self._size = 0
        self._finished: tuple[str, int] | None = None

    def write(self, data: bytes) -> None:
        self.inner.write(self._encryptor.update(data))
        self._digest.update(data)
        self._size += len(data)

    def finish(self) -> tuple[str, int]:
        if self._finished is None:
            self.inner.finish()
            self._finished = (self._digest.hexdigest(), self._size)
        return self._finished

    def reader(self) -> BinaryIO:
        # Not an io.BufferedReader, and without a name: pydicom would reopen such a file by
        # its name for deferred values, and read the ciphertext.
        return _CtrReader(self.inner.reader(), self._key, self._iv)  # type: ignore[return-value]

    def discard(self) -> None:
        self.inner.discard()


class _CtrReader(io.RawIOBase):
    """The plaintext of a CTR spool, seekable: any offset decrypts on its own. Decrypted
    windows are kept one at a time, since parsers read a few bytes at a time."""

    WINDOW = 64 * 1024

    def __init__(self, sealed: BinaryIO, key: bytes, iv: bytes) -> None:
        self._sealed = sealed
        self._cipher = algorithms.AES(key)
        self._iv = int.from_bytes(iv, "big")
        self._pos = 0
        self._window_at = 0
        self._window = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = self._sealed.seek(offset, io.SEEK_END)
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[override]
        wanted = len(buffer)
        start = self._pos - self._window_at
        if not 0 <= start <= len(self._window) - wanted:
            self._fill(self._pos, wanted)
            start = self._pos - self._window_at
        got = self._window[start : start + wanted]
        buffer[: len(got)] = got
        self._pos += len(got)
        return len(got)

    def _fill(self, pos: int, wanted: int) -> None:
        at = pos - pos % 16  # the counter block holding ``pos``
        self._sealed.seek(at)
        data = self._sealed.read(max(self.WINDOW, pos - at + wanted))
        counter = ((self._iv + at // 16) % (1 << 128)).to_bytes(16, "big")
        self._window = Cipher(self._cipher, modes.CTR(counter)).decryptor().update(data)
        self._window_at = at

    def close(self) -> None:
        self._sealed.close()
        super().close()


def _chunk_count(size: int, chunk: int) -> int:
    return max(1, -(-size // chunk))  # an empty blob still has one (empty) sealed chunk


def _aad(sha256: str, index: int, last: bool) -> bytes:
    return sha256.encode() + struct.pack(">QB", index, last)


def _span(offset: int, length: int, chunk: int, size: int) -> tuple[int, int] | None:
    """The first and last chunk holding a plaintext range; None for an empty range."""
    end = min(offset + length, size)
    if offset >= end:
        return None
    return offset // chunk, (end - 1) // chunk


def _sealed_range(span: tuple[int, int], chunk: int) -> tuple[int, int]:
    first, last = span
    record = NONCE + chunk + TAG
    return HEADER.size + first * record, (last - first + 1) * record


def _anonymous_file(directory: Path) -> int:
    """A file with no name in ``directory``: nothing of it outlives the process."""
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
    except (AttributeError, OSError):  # a file system without O_TMPFILE
        fd, name = tempfile.mkstemp(dir=directory, prefix="in-", suffix=".part")
        os.unlink(name)
        return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _off_loop(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def load_store_key(key_file: Path | str | None, given: str | None = None) -> bytes | None:
    """The store key: ``given`` (TESSERA_STORE_KEY), else the key file (created on first use);
    None: off.

    Losing the key file loses every encrypted object: back it up apart from the data.
    """
    if given:
        return parse_key(given, what="TESSERA_STORE_KEY")
    if key_file is None:
        return None
    return load_or_create(Path(key_file), what="store key")
