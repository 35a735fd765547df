"""Blobs on any S3-compatible service, through obstore.

An object is named ``{prefix}ab/cd/<sha256>``. Bytes come in through a local ``FileSpool``,
hashed while written; ``put`` skips the upload when the object is already there (HEAD), and
otherwise uploads it with an ``x-amz-checksum-sha256`` header on the single PUT or on every part
of a multipart upload, so the service itself refuses a part whose bytes do not match the header
(``BadDigest``). The headers are computed by obstore from the bytes it sends, so a final HEAD
then compares the object's size and the checksum the service reports for it with what the
spool hashed while it was written: the whole sha256 (the object's name) for a single PUT, the
sha256 of the parts' sha256s for a multipart upload.

obstore does its work on its own Rust runtime, so none of these calls block the event loop; the
local file work (spool finish, materialize's writes) runs in the default executor.

Errors: a missing object is ``BlobMissing``; an object whose final HEAD does not match the
spool is removed again and ``BlobIntegrityError``; anything else the service or the network
does (refused connection, timeout, 5xx, refused credentials, a refused checksum) is
``StoreUnavailable`` with a message naming the bucket and a retry delay.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import obstore
from obstore.exceptions import NotFoundError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from hub.archive.blobs.protocol import (
    CHUNK,
    BlobInfo,
    BlobIntegrityError,
    BlobMissing,
    Spool,
    StoreUnavailable,
)
from hub.archive.blobs.spool import FileSpool, clear_spools

if TYPE_CHECKING:
    from obstore import ObjectMeta

T = TypeVar("T")

SHA256 = re.compile(r"[0-9a-f]{64}")
ERROR_CODE = re.compile(r"<Code>([^<]+)</Code>")
ERROR_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
RETRY_AFTER = 5.0  # the service is down or overloaded: worth asking again soon
COPY_LIMIT = 5 << 30  # the largest object one CopyObject request copies
CREDENTIALS_RETRY_AFTER = 60.0  # a configuration fault: someone has to fix it first


@dataclass(frozen=True, slots=True)
class S3Settings:
    endpoint: str  # e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:8333
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    prefix: str = "blobs/"
    allow_http: bool = False  # plain HTTP to the endpoint: loopback and test setups only
    part_size: int = 8 << 20  # multipart part size; objects up to this size go in one PUT
    upload_concurrency: int = 4
    connect_timeout: float = 5.0
    timeout: float = 60.0
    retries: int = 3  # per request, for 5xx, dropped connections and timeouts
    # A put finding its object stored longer ago than this refreshes it rather than reusing
    # it as it is; must stay well under the janitor's grace period.
    reuse_within: float = 1800.0


def build_client(settings: S3Settings) -> S3Store:
    """The obstore client for ``settings`` (also used by the janitor)."""
    if not (settings.access_key and settings.secret_key):
        raise ValueError("S3 settings need an access key and a secret key")
    return S3Store(
        settings.bucket,
        prefix=settings.prefix.strip("/") or None,
        config={
            "endpoint": settings.endpoint,
            "region": settings.region,
            "access_key_id": settings.access_key,
            "secret_access_key": settings.secret_key,
            "virtual_hosted_style_request": False,
            "checksum_algorithm": "sha256",
            # The x-amz-checksum-sha256 header already covers the body; signing it as well
            # would hash every byte a second time.
            "unsigned_payload": True,
        },
        client_options={
            "allow_http": settings.allow_http,
            "connect_timeout": timedelta(seconds=settings.connect_timeout),
            "timeout": timedelta(seconds=settings.timeout),
        },
        retry_config={
            "max_retries": settings.retries,
            "retry_timeout": timedelta(seconds=settings.timeout),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=2),
            },
        },
    )


def key_prefix(settings: S3Settings) -> str:
    """The prefix of the store's keys as S3 lists them (obstore adds the slash)."""
    prefix = settings.prefix.strip("/")
    return prefix + "/" if prefix else ""


def botocore_client(settings: S3Settings) -> Any:
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=settings.endpoint,
        region_name=settings.region,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.timeout,
            retries={"max_attempts": settings.retries + 1, "mode": "standard"},
        ),
    )


def blob_info(sha256: str, meta: ObjectMeta) -> BlobInfo:
    return BlobInfo(sha256, int(meta["size"]), meta["last_modified"].timestamp())


def stored_checksum(spool: FileSpool, sha: str, size: int, part_size: int) -> str | None:
    """The x-amz-checksum-sha256 S3 reports for the spool's bytes uploaded in ``part_size``
    parts (one PUT up to ``part_size``); None if the spool hashed other parts."""
    if size <= part_size:
        return base64.b64encode(bytes.fromhex(sha)).decode()
    if spool.part_size != part_size:
        return None
    parts = spool.part_digests()
    return base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode() + f"-{len(parts)}"


def object_key(sha256: str) -> str:
    """The key below the prefix."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


class SizeMemo:
    """The sizes of the objects read most recently."""

    def __init__(self, limit: int = 4096) -> None:
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._limit = limit

    def get(self, sha256: str) -> int | None:
        size = self._sizes.get(sha256)
        if size is not None:
            self._sizes.move_to_end(sha256)
        return size

    def forget(self, sha256: str) -> None:
        self._sizes.pop(sha256, None)

    def put(self, sha256: str, size: int) -> None:
        self._sizes[sha256] = size
        self._sizes.move_to_end(sha256)
        if len(self._sizes) > self._limit:
            self._sizes.popitem(last=False)


class S3BlobStore:
    def __init__(self, settings: S3Settings, spool_dir: Path) -> None:
        self.settings = settings
        self.spool_dir = spool_dir
        spool_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(spool_dir, 0o700)
        self.client = build_client(settings)
        self._sizes = SizeMemo()
        self._botocore: Any = None
        self._where = f"S3 bucket {settings.bucket!r} at {settings.endpoint}"

    # -- writes --------------------------------------------------------------
    def spool(self) -> FileSpool:
        return FileSpool(self.spool_dir, self.settings.part_size)

    async def put(self, spool: Spool, *, name: str | None = None) -> bool:
        """Upload a finished spool unless the object is stored already.

        A put reuses an object stored within ``reuse_within``, well inside the janitor's
        grace period, as it is. An older one is refreshed: copied onto itself, which makes it
        young and keeps its bytes (``_reused``). Either way, an object a put has just taken or
        reused is younger than the grace period, so neither the janitor nor the orphan repair
        removes it before its index row is committed."""
        if not isinstance(spool, FileSpool):
            raise TypeError(f"an S3 store takes its own spools, not {type(spool).__name__}")
        loop = asyncio.get_running_loop()
        try:
            written, size = await loop.run_in_executor(None, spool.finish)
            sha = name or written
            if await self._reused(sha):
                return False
            await self._guard(
                f"upload of {sha}",
                obstore.put_async(
                    self.client,
                    object_key(sha),
                    spool.path,
                    use_multipart=size > self.settings.part_size,
                    chunk_size=self.settings.part_size,
                    max_concurrency=self.settings.upload_concurrency,
                ),
            )
            await self._check_stored(spool, sha, written, size)
            return True
        finally:
            await loop.run_in_executor(None, spool.discard)

    async def _reused(self, sha: str) -> bool:
        """Whether the stored copy stands for this put. An old one may be an orphan that the
        janitor is about to remove, so it is made young first by a copy onto itself (S3 cannot
        touch an object otherwise), not by uploading the spool again: under encryption at rest
        a new upload would be sealed with other nonces, and the chunk caches of other nodes,
        which hold chunks of the stored bytes, would then mix two sealed forms. An object too
        large to copy in one request, or gone meanwhile, is uploaded again."""
        try:
            info = await self.info(sha)
        except BlobMissing:
            return False
        if time.time() - info.modified < self.settings.reuse_within:
            return True
        if info.size > COPY_LIMIT:
            return False
        key = key_prefix(self.settings) + object_key(sha)
        try:
            await self.boto(
                f"refresh of {sha}",
                self.botocore().copy_object,
                Bucket=self.settings.bucket,
                Key=key,
                CopySource={"Bucket": self.settings.bucket, "Key": key},
                MetadataDirective="REPLACE",
            )
        except StoreUnavailable:
            return False
        return True

    async def _check_stored(self, spool: FileSpool, sha: str, written: str, size: int) -> None:
        """The object stored as ``sha`` has the spool's size and, where the service reports
        it, the SHA-256 checksum of the spool's bytes (``written``: the name, unless a wrapper
        stored a sealed form): whole for a single PUT, composite (the sha256 of the parts'
        digests, "-N") for a multipart upload."""
        head = await self.boto(
            f"check of {sha}",
            self.botocore().head_object,
            Bucket=self.settings.bucket,
            Key=key_prefix(self.settings) + object_key(sha),
            ChecksumMode="ENABLED",
        )
        expected = stored_checksum(spool, written, size, self.settings.part_size)
        reported = head.get("ChecksumSHA256")
        # Services that keep no checksum report none: the size is all there is to check.
        checksum_ok = expected is None or reported is None or reported == expected
        if head["ContentLength"] == size and checksum_ok:
            return
        await self.delete(sha)
        # The service took what obstore read from the spool file, so that file no longer
        # holds what was hashed while it was written (or a service without checksums kept
        # other bytes). The bucket is left out: this message reaches the sender.
        raise BlobIntegrityError(
            f"the S3 object of {sha} holds {head['ContentLength']} bytes with checksum "
            f"{reported}, but its spool hashed {size} bytes with checksum {expected} while it "
            "was written; removed it, not stored"
        )

    def botocore(self) -> Any:
        """A botocore client on the same bucket, for the calls obstore lacks (made lazily:
        botocore takes a while to import)."""
        if self._botocore is None:
            self._botocore = botocore_client(self.settings)
        return self._botocore

    async def boto(self, what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking botocore call, in an executor, its errors as StoreUnavailable."""
        from botocore.exceptions import BotoCoreError, ClientError

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, partial(call, *args, **kwargs))
        except (BotoCoreError, ClientError) as e:
            raise StoreUnavailable(f"{what} failed at {self._where}: {e}", RETRY_AFTER) from e

    async def put_bytes(self, data: bytes) -> str:
        loop = asyncio.get_running_loop()
        spool = await loop.run_in_executor(None, self.spool)
        await loop.run_in_executor(None, spool.write, data)
        sha, _ = await loop.run_in_executor(None, spool.finish)
        await self.put(spool)
        return sha

    async def delete(self, sha256: str) -> None:
        with contextlib.suppress(BlobMissing):
            await self._guard(
                f"delete of {sha256}", obstore.delete_async(self.client, object_key(sha256))
            )

    async def clear_spools(self, older_than: float = 0.0) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, clear_spools, self.spool_dir, older_than)

    # -- reads ---------------------------------------------------------------
    async def exists(self, sha256: str) -> bool:
        try:
            await self.size(sha256)
        except BlobMissing:
            return False
        return True

    async def size(self, sha256: str) -> int:
        return (await self.info(sha256)).size

    async def info(self, sha256: str) -> BlobInfo:
        """Size and last-modified time (one HEAD)."""
        meta = await self._guard(
            f"HEAD of {sha256}", obstore.head_async(self.client, object_key(sha256))
        )
        self._sizes.put(sha256, int(meta["size"]))
        return blob_info(sha256, meta)

    async def _known_size(self, sha256: str) -> int:
        """Objects are immutable, so a size once seen holds for good."""
        size = self._sizes.get(sha256)
        return await self.size(sha256) if size is None else size

    async def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if self._sizes.get(sha256) is None:
            try:
                return bytes(
                    await self._guard(
                        f"read of {sha256}",
                        obstore.get_range_async(
                            self.client, object_key(sha256), start=offset, length=length
                        ),
                    )
                )
            except StoreUnavailable as refused:
                try:
                    size = await self._known_size(sha256)
                except StoreUnavailable:
                    raise refused from None
                if offset < size:
                    raise  # not the 416 of a range past the end
                return b""
        return (await self.read_ranges(sha256, [(offset, length)]))[0]

    async def read_ranges(self, sha256: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """obstore merges ranges less than 1 MiB apart into one ranged GET and runs the GETs
        concurrently. It needs every range inside the object, so they are clamped to its size
        first (one HEAD per object and process)."""
        if all(n <= 0 for _, n in ranges):
            return [b"" for _ in ranges]
        size = await self._known_size(sha256)
        clamped = [(o, min(n, size - o)) for o, n in ranges]
        wanted = [(o, n) for o, n in clamped if n > 0]
        try:
            fetched = iter(await self._get_ranges(sha256, wanted) if wanted else [])
        except StoreUnavailable:
            self._sizes.forget(sha256)  # in case the size was the trouble: HEAD it next time
            raise
        return [next(fetched) if n > 0 else b"" for _, n in clamped]

    async def _get_ranges(self, sha256: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        buffers = await self._guard(
            f"read of {sha256}",
            obstore.get_ranges_async(
                self.client,
                object_key(sha256),
                starts=[o for o, _ in ranges],
                lengths=[n for _, n in ranges],
            ),
        )
        return [bytes(b) for b in buffers]

    async def stream(self, sha256: str, chunk: int = CHUNK) -> AsyncIterator[bytes]:
        what = f"read of {sha256}"
        result = await self._guard(what, obstore.get_async(self.client, object_key(sha256)))
        blocks = aiter(result.stream(min_chunk_size=chunk))
        while True:
            try:
                block = await self._guard(what, anext(blocks))
            except StopAsyncIteration:
                return
            yield bytes(block)

    @contextlib.asynccontextmanager
    async def materialize(self, sha256: str) -> AsyncIterator[Path]:
        loop = asyncio.get_running_loop()
        fd, name = await loop.run_in_executor(
            None, lambda: tempfile.mkstemp(dir=self.spool_dir, prefix="mat-")
        )
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                async for block in self.stream(sha256):
                    await loop.run_in_executor(None, out.write, block)
            yield path
        finally:
            await loop.run_in_executor(None, lambda: path.unlink(missing_ok=True))

    async def iterate(self) -> AsyncIterator[BlobInfo]:
        pages = aiter(obstore.list(self.client, chunk_size=1000))
        while True:
            try:
                page = await self._guard("listing", anext(pages))
            except StopAsyncIteration:
                return
            for meta in page:
                sha = meta["path"].rsplit("/", 1)[-1]
                if SHA256.fullmatch(sha) and meta["path"] == object_key(sha):
                    yield blob_info(sha, meta)

    async def close(self) -> None:
        """Nothing to release: obstore's connection pool goes with the client."""

    # -- errors ----------------------------------------------------------------
    async def _guard(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except (StopAsyncIteration, BlobMissing):
            raise
        except (FileNotFoundError, NotFoundError) as e:  # obstore raises the builtin one
            raise BlobMissing(f"{what}: no such object in {self._where}") from e
        except (PermissionDeniedError, UnauthenticatedError) as e:
            raise StoreUnavailable(
                f"{what}: {self._where} refused the credentials: {first_line(e)}",
                CREDENTIALS_RETRY_AFTER,
            ) from e
        except Exception as e:  # obstore errors, OSError, and the RustPanic of a Rust panic
            raise StoreUnavailable(
                f"{what} failed at {self._where}: {first_line(e)}", RETRY_AFTER
            ) from e


def first_line(error: BaseException) -> str:
    """obstore's message, less the multi-line debug dump after its first line, with the code
    and message of the service's XML error body, which follow on later lines."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    code, message = ERROR_CODE.search(text), ERROR_MESSAGE.search(text)
    if code:
        line = line.removesuffix(': <?xml version="1.0" encoding="UTF-8"?>')
        line += f" [{code.group(1)}{': ' + message.group(1) if message else ''}]"
    return line
