"""Immutable, content-addressed blob store on a local directory.

A blob is named by the sha256 of its bytes. Writes go to a temp file in the same file
system, are fsynced, then renamed into place, so a crash leaves either no blob or a whole one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Lock

CHUNK = 1 << 20


class BlobStore:
    def __init__(self, root: Path, tmp_dir: Path, open_files: int = 128) -> None:
        self.root = root
        self.tmp_dir = tmp_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._fd_limit = open_files
        self._lock = Lock()

    # -- paths -------------------------------------------------------------
    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def new_temp(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="in-", suffix=".part")
        return fd, Path(name)

    def clear_temp(self, older_than: float = 0.0) -> int:
        """Remove temp files left by an interrupted write, sparing those written to within
        ``older_than`` seconds (an upload may still be filling them); returns how many."""
        count = 0
        now = time.time()
        for p in self.tmp_dir.glob("*.part"):
            try:
                if older_than and now - p.stat().st_mtime < older_than:
                    continue
            except FileNotFoundError:
                continue
            p.unlink(missing_ok=True)
            count += 1
        return count

    # -- writes (blocking: call from an executor) -------------------------
    def sync(self, temp: Path) -> None:
        """Flush a temp file to disk ahead of commit, so that commit itself is quick."""
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())

    def commit(self, temp: Path, sha256: str) -> bool:
        """Move a finished temp file into place. Returns False if the blob already existed."""
        target = self.path(sha256)
        if self.claim_existing(sha256):
            temp.unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(temp, 0o444)
        os.utime(temp)  # a blob's mtime is when the store took it (see hub.archive.orphans)
        os.replace(temp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    def claim_existing(self, sha256: str) -> bool:
        """Whether the blob is stored, touching it for a write that reuses it: a repair
        running beside this process then spares it (``hub.archive.orphans``), or has just
        moved it away, and the write stores its own copy."""
        try:
            os.utime(self.path(sha256))
        except FileNotFoundError:
            return False
        except PermissionError:  # a blob this user does not own (restored by another)
            return self.exists(sha256)
        return True

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if self.claim_existing(sha):
            return sha
        fd, temp = self.new_temp()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.commit(temp, sha)
        return sha

    def delete(self, sha256: str) -> None:
        self._close_fd(sha256)
        self.path(sha256).unlink(missing_ok=True)

    # -- reads ----------------------------------------------------------------
    def pread(self, sha256: str, offset: int, length: int) -> bytes:
        """Read one byte range through a cached descriptor: one syscall on the hot path."""
        return os.pread(self._fd(sha256), length, offset)

    def iter_chunks(self, sha256: str, chunk: int = CHUNK) -> Iterator[bytes]:
        with open(self.path(sha256), "rb") as f:
            while block := f.read(chunk):
                yield block

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    @contextmanager
    def plain_path(self, sha256: str) -> Iterator[Path]:
        """A path holding the object's plain bytes, for libraries that want a file name."""
        yield self.path(sha256)

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def hash_of(self, sha256: str) -> str:
        h = hashlib.sha256()
        for block in self.iter_chunks(sha256):
            h.update(block)
        return h.hexdigest()

    def all_hashes(self) -> Iterator[str]:
        for p in self.root.glob("??/??/*"):
            if p.is_file():
                yield p.name

    def _fd(self, sha256: str) -> int:
        with self._lock:
            fd = self._fds.get(sha256)
            if fd is not None:
                self._fds.move_to_end(sha256)
                return fd
            fd = os.open(self.path(sha256), os.O_RDONLY)
            self._fds[sha256] = fd
            if len(self._fds) > self._fd_limit:
                _, old = self._fds.popitem(last=False)
                os.close(old)
            return fd

    def forget(self, sha256: str) -> None:
        """Drop the cached descriptor of a blob moved away (quarantined)."""
        self._close_fd(sha256)

    def _close_fd(self, sha256: str) -> None:
        with self._lock:
            fd = self._fds.pop(sha256, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size
