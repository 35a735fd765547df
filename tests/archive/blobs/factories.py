"""The blob stores the contract suite runs on, by name.

A factory takes the test's ``request`` and a private temp folder and yields a ready store,
closing it afterwards. ``register`` adds one; ``conftest.py`` parametrizes ``blob_store`` over
every registered name, so each implementation (and each wrapped in encryption) meets the same
contract. The S3 factories share the session's SeaweedFS server, each test under a key prefix of
its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path

import pytest
from s3_server import SeaweedS3, unique_prefix

from hub.archive.blobs import BlobStore
from hub.archive.blobs.cache import CacheSettings, ChunkCache
from hub.archive.blobs.s3 import S3BlobStore, S3Settings

StoreFactory = Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager[BlobStore]]
FACTORIES: dict[str, StoreFactory] = {}

# Small parts, so that test objects of a few MiB cross several part boundaries.
TEST_PART_SIZE = 5 << 20  # the S3 minimum for every part but the last


def register(name: str) -> Callable[[StoreFactory], StoreFactory]:
    def add(factory: StoreFactory) -> StoreFactory:
        FACTORIES[name] = factory
        return factory

    return add


def s3_settings(server: SeaweedS3, **changes) -> S3Settings:
    """Settings for ``server`` under a fresh key prefix."""
    settings = S3Settings(
        endpoint=server.endpoint,
        bucket=server.bucket,
        access_key=server.access_key,
        secret_key=server.secret_key,
        region=server.region,
        prefix=unique_prefix(),
        allow_http=True,
        part_size=TEST_PART_SIZE,
    )
    return replace(settings, **changes)


@register("s3")
@contextlib.asynccontextmanager
async def s3_store(request: pytest.FixtureRequest, tmp: Path) -> AsyncIterator[BlobStore]:
    server: SeaweedS3 = request.getfixturevalue("seaweedfs")
    store = S3BlobStore(s3_settings(server), tmp / "spool")
    try:
        yield store
    finally:
        await store.close()


# Small chunks, so that the contract's ranges cross chunk boundaries as well as part ones.
TEST_CHUNK = 256 << 10


@register("s3-cached")
@contextlib.asynccontextmanager
async def cached_s3_store(request: pytest.FixtureRequest, tmp: Path) -> AsyncIterator[BlobStore]:
    server: SeaweedS3 = request.getfixturevalue("seaweedfs")
    inner = S3BlobStore(s3_settings(server), tmp / "spool")
    store = ChunkCache(inner, CacheSettings(tmp / "cache", max_bytes=4 << 20, chunk=TEST_CHUNK))
    try:
        yield store
    finally:
        await store.close()
