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


class BlobIntegrityError(OSError):
    """An object failed its check: stored bytes altered, cut short, or sealed with another
    key; or a put whose spool no longer holds the bytes it hashed."""


class StoreUnavailable(OSError):
    """The store could not be reached or refused the request; worth retrying later."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class BlobInfo:
    sha256: str
    size: int  # as stored (an encrypting wrapper reports the sealed size)
    modified: float  # seconds since the epoch when the store last took it (see ``put``)


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

    async def put(self, spool: Spool, *, name: str | None = None) -> bool:
        """Store a finished spool under its sha256 (or ``name``: a wrapper storing a sealed
        form under the plaintext's name), consuming it. False if already stored.

        A put that finds the object already stored refreshes its ``modified`` time, so that
        an orphan repair running beside it spares the object (``hub.archive.orphans``).

        A spool whose bytes are no longer those hashed while it was written (or, under a
        wrapper, whose plaintext does not hash to ``name``) is refused with
        ``BlobIntegrityError``, and nothing is left stored under the name."""
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
        want a path. Open the path; do not resolve it (it may be a ``/proc/self/fd`` link to
        a file without a name, which nothing outlives)."""
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


@runtime_checkable
class Parking(Protocol):
    """What a store offers the orphan repair so that it never takes an object an ingest is
    reusing (``hub.archive.orphans``). A store without it leaves orphans to its janitor."""

    async def park(self, sha256: str, grace: float) -> bool:
        """Move an object not modified within ``grace`` seconds out of reach: readers and
        ``put`` no longer find it, so a put from now on stores its own copy. False (and the
        object left in place) when it is younger, gone, or was touched during the move."""
        ...

    async def unpark(self, sha256: str) -> None:
        """Bring a parked object back (a copy stored meanwhile is as good)."""
        ...


@runtime_checkable
class Cached(Protocol):
    """A store that keeps copies of stored bytes on this node (the chunk cache). An object
    removed and stored again is the same plaintext, but under encryption at rest not the same
    stored bytes, so what is kept of an earlier copy can be stale."""

    async def drop_cached(self, sha256: str) -> None:
        """Forget what is kept of the object: the next read fetches it from the store."""
        ...
