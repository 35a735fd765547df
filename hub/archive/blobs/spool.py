"""A spool on this node's disk: a private file in the temp dir, hashed while it is written.

Any store that keeps incoming objects locally before taking them (the local directory, S3)
spools with this. Blocking: use from an executor or a receiving thread.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from hub.archive.blobs.protocol import BlobIntegrityError

PREFIX, SUFFIX = "in-", ".part"


class FileSpool:
    """With ``part_size``, also the sha256 of every ``part_size`` bytes, for stores that upload
    in parts and have each part's checksum checked by the server."""

    def __init__(self, tmp_dir: Path, part_size: int | None = None) -> None:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=PREFIX, suffix=SUFFIX)  # mode 0600
        self.path = Path(name)
        self.part_size = part_size
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self._size = 0
        self._finished: tuple[str, int] | None = None
        self._gone = False  # taken by a store, or discarded
        self._part = hashlib.sha256()
        self._part_filled = 0
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError("write to a finished spool")
        self._file.write(data)
        self._digest.update(data)
        self._size += len(data)
        if self.part_size:
            self._hash_parts(memoryview(data))

    def _hash_parts(self, data: memoryview) -> None:
        assert self.part_size
        while data:
            take = min(len(data), self.part_size - self._part_filled)
            self._part.update(data[:take])
            self._part_filled += take
            data = data[take:]
            if self._part_filled == self.part_size:
                self._parts.append(self._part.digest())
                self._part, self._part_filled = hashlib.sha256(), 0

    def finish(self) -> tuple[str, int]:
        if self._finished is None:
            assert self._file is not None
            self._file.close()  # a store that keeps the file fsyncs what it takes
            self._file = None
            self._finished = (self._digest.hexdigest(), self._size)
            if self._part_filled:
                self._parts.append(self._part.digest())
        return self._finished

    def part_digests(self) -> list[bytes]:
        """The sha256 of each ``part_size`` part of the finished spool (empty without)."""
        self.finish()
        return self._parts

    def reader(self) -> BinaryIO:
        return open(self.path, "rb")

    def check(self, name: str) -> None:
        """Raise ``BlobIntegrityError`` unless the file still holds the bytes hashed while it
        was written (``name``: the object it is stored as, for the message). Reads it back."""
        sha, size = self.finish()
        with open(self.path, "rb") as f:
            found = hashlib.file_digest(f, "sha256").hexdigest(), os.fstat(f.fileno()).st_size
        if found != (sha, size):
            raise BlobIntegrityError(
                f"the spool of {name} changed on disk after it was written "
                f"({size} bytes hashed, {found[1]} bytes there now); not stored"
            )

    def discard(self) -> None:
        if self._gone:
            return
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)
        self._gone = True

    def taken(self) -> None:
        """The file has been moved into a store: nothing is left to discard."""
        self._file = None
        self._gone = True


def clear_spools(tmp_dir: Path, older_than: float = 0.0) -> int:
    """Remove spool files left by interrupted writes, sparing those written to within
    ``older_than`` seconds (an upload may still be filling them); how many were removed."""
    count = 0
    now = time.time()
    for p in tmp_dir.glob(f"{PREFIX}*{SUFFIX}"):
        try:
            if older_than and now - p.stat().st_mtime < older_than:
                continue
        except FileNotFoundError:
            continue
        p.unlink(missing_ok=True)
        count += 1
    return count


def count_spools(tmp_dir: Path) -> int:
    return sum(1 for _ in tmp_dir.glob(f"{PREFIX}*{SUFFIX}"))
