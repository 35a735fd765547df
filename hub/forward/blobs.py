"""The stored Part-10 bytes as a plain file, whatever the blob store does at rest.

A plain store's blob *is* the received file and is sent in place. A store that transforms
bytes at rest (encryption) is read through ``iter_chunks`` into a temp file in the store's temp
dir, removed after sending (and by the store's temp cleanup after a crash).
Blocking: call from an executor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hub.archive.store import BlobStore


@dataclass(frozen=True)
class PlainFile:
    path: Path
    temporary: bool

    def release(self) -> None:
        if self.temporary:
            self.path.unlink(missing_ok=True)


def stores_plain_bytes(store: BlobStore) -> bool:
    return type(store).iter_chunks is BlobStore.iter_chunks


def plain_file(store: BlobStore, sha256: str) -> PlainFile:
    if stores_plain_bytes(store):
        path = store.path(sha256)
        if not path.is_file():
            raise FileNotFoundError(f"stored object {sha256} is missing from the blob store")
        return PlainFile(path, temporary=False)
    fd, temp = store.new_temp()
    try:
        with os.fdopen(fd, "wb") as f:
            for block in store.iter_chunks(sha256):
                f.write(block)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return PlainFile(temp, temporary=True)
