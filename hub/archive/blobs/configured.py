"""The plain store a node's settings name: the local directory, or an S3 bucket behind the
node-local chunk cache. Encryption at rest, if any, is wrapped around it by the composition
root (``hub.stores``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.archive.blobs.local import LocalBlobStore
from hub.archive.blobs.protocol import BlobStore
from hub.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from hub.archive.blobs.janitor import Sweep
    from hub.archive.blobs.s3 import S3BlobStore
    from hub.archive.guard import Guard


def local_store(settings: Settings) -> LocalBlobStore:
    """The plain local directory of ``settings``: objects, spools and quarantine."""
    return LocalBlobStore(
        settings.blob_dir, settings.tmp_dir, quarantine_dir=settings.data_dir / "quarantine"
    )


def plain_store(settings: Settings) -> BlobStore:
    storage = settings.storage
    if storage.backend != "s3":
        return local_store(settings)
    from hub.archive.blobs.cache import CacheSettings, ChunkCache  # the s3 extra
    from hub.archive.blobs.s3 import S3BlobStore, S3Settings

    bucket = storage.s3
    endpoint = bucket.endpoint or f"https://s3.{bucket.region}.amazonaws.com"
    s3 = S3BlobStore(
        S3Settings(
            endpoint=endpoint,
            bucket=bucket.bucket,
            access_key=bucket.access_key_id or "",
            secret_key=bucket.secret_access_key or "",
            region=bucket.region,
            prefix=bucket.prefix or "blobs/",
            allow_http=bucket.allow_http or endpoint.startswith("http://"),
        ),
        settings.tmp_dir,
    )
    cache_dir = storage.cache_dir or settings.data_dir / "cache"
    return ChunkCache(s3, CacheSettings(cache_dir, storage.cache_bytes))


def s3_of(store: BlobStore) -> S3BlobStore | None:
    """The S3 store at the bottom of ``store``'s wrappers (cache, encryption), if any."""
    from hub.archive.blobs.s3 import S3BlobStore

    while not isinstance(store, S3BlobStore):
        inner = getattr(store, "inner", None)
        if inner is None:
            return None
        store = inner
    return store


async def sweep_bucket(
    store: BlobStore, engine: AsyncEngine, grace: float, guard: Guard | None = None
) -> Sweep | None:
    """The S3 janitor's sweep of the bucket under ``store`` (None for a local store, whose
    orphans ``hub.archive.orphans`` parks), each batch passing ``guard`` first."""
    s3 = s3_of(store)
    if s3 is None:
        return None
    from hub.archive.blobs.janitor import S3Janitor, index_names
    from hub.archive.guard import UNGUARDED

    janitor = S3Janitor(s3, grace, delete=store.delete)
    return await janitor.sweep(*index_names(engine), guard or UNGUARDED)
