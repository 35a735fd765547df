"""What a crash leaves in an S3 bucket, cleared after a grace period.

- **Abandoned multipart uploads:** a hub killed during an upload leaves its parts stored but
  invisible, and billed. Uploads begun longer ago than the grace period are aborted. obstore has
  no call to list uploads, so this part speaks S3 through botocore, in an executor.
- **Objects no index row names:** a crash between the upload and the index commit leaves a
  whole object. One modified longer ago than the grace period and named by no row is removed,
  after checking both again right before the delete. An ingest that finds such an old object
  copies it onto itself instead of reusing it as it is (``S3Settings.reuse_within``): that makes
  it young without changing its bytes (other nodes' caches stay right), so the janitor leaves
  alone whatever an ingest is about to name. Left open: an ingest whose copy lands in the moment between the janitor's last check and its delete; ``tessera
  verify`` reports the missing object, and resending the instance restores it.

The names come from callables, so any index can answer; ``index_names`` binds the archive's
index queries (``hub.archive.orphans``). Only one node sweeps at a time: aborts and removals go
in batches, each passing the ``Guard`` of that duty first (``hub.archive.guard``), so a node
that lost the duty while it listed removes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Set
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive.blobs.protocol import BlobMissing
from hub.archive.blobs.s3 import S3BlobStore, key_prefix
from hub.archive.guard import UNGUARDED, Guard, batches
from hub.archive.orphans import GRACE_SECONDS, is_named, named_hashes

log = logging.getLogger(__name__)

AllNames = Callable[[], Awaitable[Set[str]]]
IsNamed = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Upload:
    key: str
    upload_id: str
    initiated: float  # seconds since the epoch


@dataclass
class Sweep:
    aborted: list[Upload] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def index_names(engine: AsyncEngine) -> tuple[AllNames, IsNamed]:
    return partial(named_hashes, engine), partial(is_named, engine)


class S3Janitor:
    """``delete``: how a removed object goes, by default straight from the bucket; give the
    delete of the store in front (a cache, encryption) so that it forgets the object too."""

    def __init__(
        self,
        store: S3BlobStore,
        grace: float = GRACE_SECONDS,
        delete: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.grace = grace
        self._delete = delete or store.delete

    async def sweep(
        self, all_names: AllNames, is_named: IsNamed, guard: Guard = UNGUARDED
    ) -> Sweep:
        return Sweep(
            aborted=await self.abort_abandoned_uploads(guard),
            removed=await self.remove_unnamed(all_names, is_named, guard),
        )

    # -- multipart uploads -----------------------------------------------------
    async def uploads(self) -> list[Upload]:
        """The multipart uploads in progress under the store's prefix."""
        return await self._s3(self._list_uploads)

    async def abort_abandoned_uploads(self, guard: Guard = UNGUARDED) -> list[Upload]:
        old = [u for u in await self.uploads() if time.time() - u.initiated >= self.grace]
        aborted = []
        for batch in batches(old):
            async with guard.batch():
                for upload in batch:
                    guard.check()
                    await self._s3(self._abort, upload)
                    aborted.append(upload)
        if aborted:
            log.warning("aborted %d abandoned multipart upload(s)", len(aborted))
        return aborted

    def _list_uploads(self) -> list[Upload]:
        client = self.store.botocore()
        found: list[Upload] = []
        for page in client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.store.settings.bucket, Prefix=key_prefix(self.store.settings)
        ):
            for item in page.get("Uploads", []):
                initiated: datetime = item["Initiated"]
                found.append(Upload(item["Key"], item["UploadId"], initiated.timestamp()))
        return found

    def _abort(self, upload: Upload) -> None:
        self.store.botocore().abort_multipart_upload(
            Bucket=self.store.settings.bucket, Key=upload.key, UploadId=upload.upload_id
        )

    async def _s3(self, call: Callable[..., Any], *args: Any) -> Any:
        return await self.store.boto(
            f"multipart uploads of {self.store.settings.bucket}", call, *args
        )

    # -- objects no row names ----------------------------------------------------
    async def remove_unnamed(
        self, all_names: AllNames, is_named: IsNamed, guard: Guard = UNGUARDED
    ) -> list[str]:
        named = await all_names()
        candidates = [sha async for sha in self._old(named)]
        removed = []
        for batch in batches(candidates):
            async with guard.batch():
                for sha in batch:
                    guard.check()
                    if await self._still_orphan(sha, is_named):
                        await self._delete(sha)
                        removed.append(sha)
        if removed:
            log.warning("removed %d object(s) that no index row names", len(removed))
        return removed

    async def _old(self, named: Set[str]) -> AsyncIterator[str]:
        async for info in self.store.iterate():
            if info.sha256 not in named and time.time() - info.modified >= self.grace:
                yield info.sha256

    async def _still_orphan(self, sha: str, is_named: IsNamed) -> bool:
        try:
            info = await self.store.info(sha)
        except BlobMissing:
            return False
        return time.time() - info.modified >= self.grace and not await is_named(sha)
