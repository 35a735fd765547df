"""A spool on local disk: a private temp file, hashed while it is written.

The ``Spool`` of stores whose objects end up elsewhere (S3) or under another name (a local
directory, after a rename). Its methods block: call them from an executor or a receiving thread.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

PREFIX, SUFFIX = "in-", ".part"


class FileSpool:
    """With ``part_size``, also the sha256 of every ``part_size`` bytes, for stores that upload
    in parts and check each part's checksum."""

    def __init__(self, directory: Path, part_size: int | None = None) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=PREFIX, suffix=SUFFIX)  # mode 0600
        self.path = Path(name)
        self.part_size = part_size
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._size = 0
        self._result: tuple[str, int] | None = None
        self._part = hashlib.sha256()
        self._part_filled = 0
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError("write to a finished spool")
        self._file.write(data)
        self._hash.update(data)
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

    def part_digests(self) -> list[bytes]:
        """The sha256 of each part of a finished spool (empty without ``part_size``)."""
        self.finish()
        return self._parts

    def finish(self) -> tuple[str, int]:
        """Flush and fsync (once; later calls return the same answer)."""
        if self._result is None:
            assert self._file is not None
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self._result = (self._hash.hexdigest(), self._size)
            if self._part_filled:
                self._parts.append(self._part.digest())
        return self._result

    def reader(self) -> BinaryIO:
        self.finish()
        return open(self.path, "rb")

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)


def clear_spools(directory: Path, older_than: float = 0.0) -> int:
    """Remove spool files in ``directory`` not written to within ``older_than`` seconds."""
    count = 0
    now = time.time()
    for path in directory.glob(f"{PREFIX}*{SUFFIX}"):
        try:
            if older_than and now - path.stat().st_mtime < older_than:
                continue
        except FileNotFoundError:
            continue
        path.unlink(missing_ok=True)
        count += 1
    return count
