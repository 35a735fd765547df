"""The blob store seam: where object bytes live, named by the sha256 of their plaintext.

Every door and package reaches stored bytes through ``BlobStore`` only. Implementations:
a local directory, S3, and an encrypting wrapper around either, chosen by the composition
root. Objects are immutable: a name, once stored, always holds the same bytes.

An object comes in through a ``Spool``: a private local file, hashed while it is written,
which the parser reads back through ``reader()`` before ``put`` moves it into the store.
The spool's blocking methods run in an executor or a receiving thread, never on the loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

CHUNK = 1 << 20


class BlobMissing(FileNotFoundError):
    """No object of that name in the store."""


class StoreUnavailable(OSError):
    """The store could not be reached or refused the request; worth retrying later."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class BlobInfo:
    sha256: str
    size: int
    modified: float  # seconds since the epoch when the store last took it


@runtime_checkable
class Spool(Protocol):
    """An object on its way into the store."""

    def write(self, data: bytes) -> None: ...

    def finish(self) -> tuple[str, int]:
        """Flush; the sha256 and size of what was written."""
        ...

    def reader(self) -> BinaryIO:
        """A seekable view of the plaintext, for parsers; the caller closes it."""
        ...

    def discard(self) -> None:
        """Remove what was written (idempotent; a spool given to ``put`` is already gone)."""
        ...


@runtime_checkable
class BlobStore(Protocol):
    def spool(self) -> Spool:
        """A new, empty spool (blocking: creates a local file)."""
        ...

    async def put(self, spool: Spool) -> bool:
        """Store a finished spool under its sha256, consuming it. False if already stored."""
        ...

    async def put_bytes(self, data: bytes) -> str: ...

    async def exists(self, sha256: str) -> bool: ...

    async def size(self, sha256: str) -> int: ...

    async def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; short only at the end of the object."""
        ...

    async def read_ranges(self, sha256: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Several (offset, length) ranges of one object, fetched together where possible."""
        ...

    def stream(self, sha256: str, chunk: int = CHUNK) -> AsyncIterator[bytes]:
        """The whole object, a block at a time, without caching it."""
        ...

    def materialize(self, sha256: str) -> AbstractAsyncContextManager[Path]:
        """A local file of the plaintext for the duration of the block, for libraries that
        want a path."""
        ...

    async def delete(self, sha256: str) -> None: ...

    def iterate(self) -> AsyncIterator[BlobInfo]:
        """Every stored object, in no particular order."""
        ...

    async def clear_spools(self, older_than: float = 0.0) -> int:
        """Remove spools left by interrupted writes, sparing those touched within
        ``older_than`` seconds; how many were removed."""
        ...

    async def close(self) -> None: ...
