"""What only the S3 store does: checksums the service enforces, and its failures as errors."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from blob_kinds import TEST_PART_SIZE, s3_settings
from hubtest import free_port
from relay import Relay
from s3_server import SeaweedS3

from hub.archive.blobs import BlobMissing, StoreUnavailable
from hub.archive.blobs.cache import CacheSettings, ChunkCache
from hub.archive.blobs.janitor import S3Janitor
from hub.archive.blobs.s3 import S3BlobStore
from hub.security.at_rest import EncryptedBlobStore


@pytest.fixture
async def direct(seaweedfs: SeaweedS3, tmp_path: Path) -> AsyncIterator[S3BlobStore]:
    store = S3BlobStore(s3_settings(seaweedfs), tmp_path / "direct")
    yield store
    await store.close()


def through(store: S3BlobStore, endpoint: str, spool_dir: Path, **changes) -> S3BlobStore:
    """Another client on the same bucket and prefix."""
    return S3BlobStore(replace(store.settings, endpoint=endpoint, **changes), spool_dir)


@pytest.mark.parametrize(
    ("size", "marker"),
    [(3 * TEST_PART_SIZE + 5, b"partNumber=2"), (100_000, b"/blobs/")],
    ids=["multipart", "single-put"],
)
async def test_a_corrupted_part_is_refused(
    seaweedfs: SeaweedS3, direct: S3BlobStore, tmp_path: Path, size: int, marker: bytes
) -> None:
    data = os.urandom(size)
    upstream = int(seaweedfs.endpoint.rsplit(":", 1)[1])
    async with Relay(upstream, marker) as proxy:
        store = through(direct, proxy.endpoint, tmp_path / "proxied", retries=0)
        spool = store.spool()
        spool.write(data)
        sha, _ = spool.finish()
        with pytest.raises(StoreUnavailable) as refused:
            await store.put(spool)
    assert proxy.tampered == 1
    assert "upload of" in str(refused.value)
    assert "BadDigest" in str(refused.value)
    assert not spool.path.exists()
    assert not await direct.exists(sha)
    assert await S3Janitor(direct).uploads() == []  # the refused upload was aborted
    # The same bytes over a clean path are taken.
    assert await direct.put_bytes(data) == sha
    assert await direct.read_range(sha, size - 10, 10) == data[-10:]


async def test_bad_credentials_are_a_clear_error(direct: S3BlobStore, tmp_path: Path) -> None:
    sha = await direct.put_bytes(b"stored with good credentials")
    wrong = through(
        direct, direct.settings.endpoint, tmp_path / "wrong", secret_key="not-the-secret"
    )
    for call in (wrong.exists(sha), wrong.read_range(sha, 0, 5), wrong.put_bytes(b"more")):
        with pytest.raises(StoreUnavailable) as refused:
            await call
        assert "refused the credentials" in str(refused.value)
        assert refused.value.retry_after >= 30
    assert await wrong.clear_spools() == 0


async def test_an_endpoint_down_is_unavailable(direct: S3BlobStore, tmp_path: Path) -> None:
    down = through(direct, f"http://127.0.0.1:{free_port()}", tmp_path / "down", retries=1)
    for call in (
        down.exists("a" * 64),
        down.read_range("a" * 64, 0, 5),
        down.read_ranges("a" * 64, [(0, 5), (10, 5)]),
        down.put_bytes(b"nowhere to go"),
    ):
        with pytest.raises(StoreUnavailable) as unavailable:
            await call
        assert down.settings.endpoint in str(unavailable.value)
        assert 0 < unavailable.value.retry_after <= 10
    with pytest.raises(StoreUnavailable):
        _ = [b async for b in down.stream("a" * 64)]
    with pytest.raises(StoreUnavailable):
        _ = [i async for i in down.iterate()]
    assert await down.clear_spools() == 0


async def test_objects_outside_the_layout_are_not_listed(direct: S3BlobStore) -> None:
    import obstore

    sha = await direct.put_bytes(b"named by its hash")
    await obstore.put_async(direct.client, "notes/readme.txt", b"not a blob")
    await obstore.put_async(direct.client, f"00/00/{sha}", b"misplaced")
    assert [i.sha256 async for i in direct.iterate()] == [sha]
    with pytest.raises(BlobMissing):
        await direct.size("f" * 64)


async def test_a_5xx_answer_is_unavailable(direct: S3BlobStore, tmp_path: Path) -> None:
    """SeaweedFS cannot be made to answer 503 on demand, so a stand-in endpoint does: it
    answers every request the way an overloaded S3 service does (SlowDown)."""
    slow_down = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        "<Message>Please reduce your request rate.</Message></Error>"
    )
    asked = 0

    async def overloaded(request: web.Request) -> web.Response:
        nonlocal asked
        asked += 1
        await request.read()
        return web.Response(status=503, text=slow_down, content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", overloaded)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        busy = through(direct, f"http://127.0.0.1:{port}", tmp_path / "busy", retries=1)
        for call in (lambda: busy.read_range("b" * 64, 0, 10), lambda: busy.put_bytes(b"later")):
            with pytest.raises(StoreUnavailable) as unavailable:
                await call()
            assert "503" in str(unavailable.value)
            assert unavailable.value.retry_after > 0
        assert asked >= 4  # each request was retried once
    finally:
        await runner.cleanup()


async def test_an_old_copy_is_refreshed_not_reused_as_it_is(
    direct: S3BlobStore, tmp_path: Path
) -> None:
    """An object older than reuse_within may be an orphan the janitor is about to remove: a put
    of the same bytes refreshes it in place (a copy onto itself), which makes it young."""
    sha = await direct.put_bytes(b"stored long ago")
    first = (await direct.info(sha)).modified
    assert not await direct.put(_spooled(direct, b"stored long ago"))  # young: reused
    eager = through(direct, direct.settings.endpoint, tmp_path / "eager", reuse_within=0)
    assert not await eager.put(_spooled(eager, b"stored long ago"))  # refreshed, not uploaded
    assert (await direct.info(sha)).modified >= first
    assert await direct.read_range(sha, 0, 100) == b"stored long ago"
    await direct.delete(sha)
    assert await eager.put(_spooled(eager, b"stored long ago"))  # gone: uploaded
    assert await direct.read_range(sha, 0, 100) == b"stored long ago"


async def test_another_nodes_cache_stays_good_when_an_old_object_is_stored_again(
    direct: S3BlobStore, tmp_path: Path
) -> None:
    """With encryption at rest, a node storing an object again that was stored long ago must
    not replace its sealed bytes: another node's chunk cache holds chunks of them, and would
    join them with chunks of a copy sealed under other nonces."""
    key = os.urandom(32)
    a = encrypted_node(direct, tmp_path / "a", key, reuse_within=0.0)  # every object is old
    b = encrypted_node(direct, tmp_path / "b", key)
    data = os.urandom(3 << 20)
    sha = await a.put_bytes(data)
    assert await b.read_range(sha, 0, 1000) == data[:1000]  # b caches the first chunk
    await a.put_bytes(data)
    assert await b.read_range(sha, 0, len(data)) == data


async def test_another_nodes_cache_recovers_from_chunks_of_an_earlier_copy(
    direct: S3BlobStore, tmp_path: Path
) -> None:
    """An object removed and stored again (a repair, an ingest after a delete) is sealed under
    other nonces, while another node's chunk cache may still hold chunks of the earlier copy.
    Beside chunks of the new one they fail authentication: that node drops its chunks of the
    object and reads it from the bucket again."""
    key = os.urandom(32)
    a, b = (encrypted_node(direct, tmp_path / name, key) for name in "ab")
    data = os.urandom(3 << 20)
    sha = await a.put_bytes(data)

    async def streamed() -> bytes:
        return b"".join([block async for block in b.stream(sha)])

    for read_all in (lambda: b.read_range(sha, 0, len(data)), streamed):
        assert await b.read_range(sha, 0, 1000) == data[:1000]  # b caches the first chunk
        await a.delete(sha)
        assert await a.put_bytes(data) == sha  # sealed again, under other nonces
        assert await read_all() == data


def encrypted_node(direct: S3BlobStore, folder: Path, key: bytes, **changes) -> EncryptedBlobStore:
    """A node's store on the bucket of ``direct``: encryption over a chunk cache over S3."""
    s3 = through(direct, direct.settings.endpoint, folder, **changes)
    return EncryptedBlobStore(ChunkCache(s3, CacheSettings(folder / "cache")), key, tmp_dir=folder)


def _spooled(store: S3BlobStore, data: bytes):
    spool = store.spool()
    spool.write(data)
    spool.finish()
    return spool
