"""Every kind of ``BlobStore``, for the contract suite (``test_contract.py``).

A kind of store is registered once in ``KINDS``: how to open one in a test's directory, and
how to alter one stored object behind the store's back (to show that a corrupted object is
refused). A store on another engine is one more entry; its encrypted form one more line.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from hub.archive.blobs import BlobStore
from hub.archive.blobs.local import LocalBlobStore
from hub.security.at_rest import EncryptedBlobStore

KEY = bytes(range(32))
SEAL_CHUNK = 4096  # small sealed chunks, so that short ranges cross chunk boundaries


@dataclass(frozen=True)
class StoreKind:
    open: Callable[[Path], Awaitable[BlobStore]]
    corrupt: Callable[[BlobStore, str], Awaitable[None]]  # flip a byte of the stored form
    age: Callable[[BlobStore, str, float], Awaitable[None]] | None  # set ``modified`` back
    encrypted: bool = False


async def _open_local(root: Path) -> LocalBlobStore:
    return LocalBlobStore(root / "blobs", root / "tmp", quarantine_dir=root / "quarantine")


async def _corrupt_local(store: BlobStore, sha256: str) -> None:
    assert isinstance(store, LocalBlobStore)
    path = store.path(sha256)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


async def _age_local(store: BlobStore, sha256: str, seconds: float) -> None:
    assert isinstance(store, LocalBlobStore)
    path = store.path(sha256)
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))


def encrypted(kind: StoreKind) -> StoreKind:
    """``kind`` wrapped in encryption at rest: the same inner store, holding ciphertext."""

    async def open_store(root: Path) -> BlobStore:
        inner = await kind.open(root)
        return EncryptedBlobStore(inner, KEY, tmp_dir=root / "tmp", chunk_size=SEAL_CHUNK)

    def inner(store: BlobStore) -> BlobStore:
        assert isinstance(store, EncryptedBlobStore)
        return store.inner

    async def corrupt(store: BlobStore, sha256: str) -> None:
        await kind.corrupt(inner(store), sha256)

    age = None
    if kind.age is not None:
        inner_age = kind.age

        async def age(store: BlobStore, sha256: str, seconds: float) -> None:
            await inner_age(inner(store), sha256, seconds)

    return StoreKind(open_store, corrupt, age, encrypted=True)


KINDS: dict[str, StoreKind] = {"local": StoreKind(_open_local, _corrupt_local, _age_local)}
KINDS["local+encrypted"] = encrypted(KINDS["local"])
