"""Every kind of ``BlobStore``, for the contract suite (``test_contract.py``).

A kind of store is registered once in ``KINDS``: how to open one in a test's directory (given
the test's ``request``, for the fixtures an engine needs), and how to alter one stored object
behind the store's back (to show that a corrupted object is refused). A store on another
engine is one more entry; its encrypted form one more line. The S3 kinds share the session's
SeaweedFS server (``seaweedfs``), each test under a key prefix of its own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from s3_server import SeaweedS3, bucket_settings, unique_prefix

from hub.archive.blobs import BlobStore
from hub.archive.blobs.cache import CacheSettings, ChunkCache
from hub.archive.blobs.local import LocalBlobStore
from hub.archive.blobs.s3 import S3BlobStore, S3Settings, key_prefix, object_key
from hub.security.at_rest import EncryptedBlobStore

KEY = bytes(range(32))
SEAL_CHUNK = 4096  # small sealed chunks, so that short ranges cross chunk boundaries
# Small parts, so that test objects of a few MiB cross several part boundaries.
TEST_PART_SIZE = 5 << 20  # the S3 minimum for every part but the last
# Small cache chunks, so that the contract's ranges cross chunk boundaries as well as part ones.
TEST_CACHE_CHUNK = 256 << 10


@dataclass(frozen=True)
class StoreKind:
    open: Callable[[Path, pytest.FixtureRequest], Awaitable[BlobStore]]
    corrupt: Callable[[BlobStore, str], Awaitable[None]]  # flip a byte of the stored form
    age: Callable[[BlobStore, str, float], Awaitable[None]] | None  # set ``modified`` back
    encrypted: bool = False


async def _open_local(root: Path, request: pytest.FixtureRequest) -> LocalBlobStore:
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

    async def open_store(root: Path, request: pytest.FixtureRequest) -> BlobStore:
        inner = await kind.open(root, request)
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


def s3_settings(server: SeaweedS3, **changes) -> S3Settings:
    """Settings for ``server`` under a fresh key prefix."""
    return bucket_settings(server, **{"part_size": TEST_PART_SIZE, **changes})


async def _open_s3(root: Path, request: pytest.FixtureRequest) -> S3BlobStore:
    server: SeaweedS3 = request.getfixturevalue("seaweedfs")
    # One store per directory: stores opened again on the same directory see the same objects.
    marker = root / "s3-prefix"
    if not marker.exists():
        marker.write_text(unique_prefix())
    return S3BlobStore(s3_settings(server, prefix=marker.read_text()), root / "tmp")


async def _open_s3_cached(root: Path, request: pytest.FixtureRequest) -> ChunkCache:
    inner = await _open_s3(root, request)
    settings = CacheSettings(root / "cache", max_bytes=4 << 20, chunk=TEST_CACHE_CHUNK)
    return ChunkCache(inner, settings)


def _s3_of(store: BlobStore) -> S3BlobStore:
    if isinstance(store, ChunkCache):
        store = store.inner
    assert isinstance(store, S3BlobStore)
    return store


async def _corrupt_s3(store: BlobStore, sha256: str) -> None:
    """Rewrite the object with one byte flipped, behind the store (and its cache's) back."""
    s3 = _s3_of(store)
    key = key_prefix(s3.settings) + object_key(sha256)
    client = s3.botocore()

    def flip() -> None:
        data = bytearray(client.get_object(Bucket=s3.settings.bucket, Key=key)["Body"].read())
        data[len(data) // 2] ^= 0x01
        client.put_object(Bucket=s3.settings.bucket, Key=key, Body=bytes(data))

    await asyncio.get_running_loop().run_in_executor(None, flip)
    if isinstance(store, ChunkCache):
        store.forget(sha256)


# S3 sets an object's modified time itself: a test cannot age one (``age`` None).
KINDS: dict[str, StoreKind] = {
    "local": StoreKind(_open_local, _corrupt_local, _age_local),
    "s3": StoreKind(_open_s3, _corrupt_s3, None),
    "s3-cached": StoreKind(_open_s3_cached, _corrupt_s3, None),
}
for _name in ("local", "s3", "s3-cached"):
    KINDS[f"{_name}+encrypted"] = encrypted(KINDS[_name])
