"""The contract every BlobStore keeps, run on each registered implementation."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from factories import TEST_PART_SIZE

from hub.archive.blobs import BlobMissing, BlobStore

PART = TEST_PART_SIZE
MISSING = "0" * 64


async def put_spooled(store: BlobStore, data: bytes, pieces: int = 3) -> tuple[str, bool]:
    spool = store.spool()
    step = len(data) // pieces + 1
    for start in range(0, len(data), step):
        spool.write(data[start : start + step])
    sha, size = spool.finish()
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    return sha, await store.put(spool)


async def test_put_is_idempotent(blob_store: BlobStore) -> None:
    data = os.urandom(100_000)
    sha, stored = await put_spooled(blob_store, data)
    assert stored
    again, stored_again = await put_spooled(blob_store, data)
    assert (again, stored_again) == (sha, False)
    assert await blob_store.put_bytes(data) == sha
    assert await blob_store.exists(sha)
    assert await blob_store.size(sha) == len(data)
    assert await blob_store.read_range(sha, 0, len(data)) == data


async def test_an_empty_object(blob_store: BlobStore) -> None:
    sha = await blob_store.put_bytes(b"")
    assert sha == hashlib.sha256(b"").hexdigest()
    assert await blob_store.size(sha) == 0
    assert await blob_store.read_range(sha, 0, 10) == b""
    assert await blob_store.read_ranges(sha, [(0, 1), (5, 5)]) == [b"", b""]
    assert [b async for b in blob_store.stream(sha)] in ([], [b""])


async def test_put_consumes_the_spool(blob_store: BlobStore) -> None:
    spool = blob_store.spool()
    spool.write(b"plain text of the object")
    spool.finish()
    with spool.reader() as r:
        assert r.read() == b"plain text of the object"
    await blob_store.put(spool)
    assert await blob_store.clear_spools() == 0


async def test_ranges_across_part_boundaries(blob_store: BlobStore) -> None:
    data = os.urandom(2 * PART + 12345)
    sha, _ = await put_spooled(blob_store, data)
    for offset, length in [(PART - 10, 20), (2 * PART - 1, 2), (0, 2 * PART + 12345), (PART, PART)]:
        assert await blob_store.read_range(sha, offset, length) == data[offset : offset + length]
    ranges = [(0, 100), (PART - 5, 10), (PART + 100, 32 << 10), (2 * PART - 7, 7), (10, 20)]
    assert await blob_store.read_ranges(sha, ranges) == [data[o : o + n] for o, n in ranges]


async def test_ranges_short_only_at_the_end(blob_store: BlobStore) -> None:
    data = os.urandom(50_000)
    sha = await blob_store.put_bytes(data)
    assert await blob_store.read_range(sha, 49_990, 100) == data[49_990:]
    assert await blob_store.read_range(sha, 50_000, 10) == b""
    assert await blob_store.read_range(sha, 60_000, 10) == b""
    assert await blob_store.read_range(sha, 5, 0) == b""
    got = await blob_store.read_ranges(sha, [(0, 10), (49_995, 10), (70_000, 5), (3, 0)])
    assert got == [data[:10], data[49_995:], b"", b""]


async def test_stream_and_materialize(blob_store: BlobStore) -> None:
    data = os.urandom(PART + 777)
    sha, _ = await put_spooled(blob_store, data)
    blocks = [b async for b in blob_store.stream(sha, chunk=1 << 20)]
    assert b"".join(blocks) == data
    assert len(blocks) > 1
    async with blob_store.materialize(sha) as path:
        assert path.read_bytes() == data
        assert path.stat().st_mode & 0o077 == 0
    assert not path.exists()


async def test_a_missing_key(blob_store: BlobStore) -> None:
    assert not await blob_store.exists(MISSING)
    with pytest.raises(BlobMissing):
        await blob_store.size(MISSING)
    with pytest.raises(BlobMissing):
        await blob_store.read_range(MISSING, 0, 10)
    with pytest.raises(BlobMissing):
        await blob_store.read_ranges(MISSING, [(0, 10), (20, 10)])
    with pytest.raises(BlobMissing):
        _ = [b async for b in blob_store.stream(MISSING)]
    with pytest.raises(BlobMissing):
        async with blob_store.materialize(MISSING):
            pass


async def test_delete(blob_store: BlobStore) -> None:
    sha = await blob_store.put_bytes(b"to be deleted")
    keep = await blob_store.put_bytes(b"to be kept")
    await blob_store.delete(sha)
    assert not await blob_store.exists(sha)
    assert await blob_store.exists(keep)
    await blob_store.delete(sha)  # deleting what is gone is not an error
    with pytest.raises(BlobMissing):
        await blob_store.read_range(sha, 0, 1)


async def test_iterate(blob_store: BlobStore) -> None:
    before = time.time()
    small, large = [b"a", b"bb" * 1000], os.urandom(PART + 1)
    for data in small:
        await blob_store.put_bytes(data)
    await put_spooled(blob_store, large)
    expected = {hashlib.sha256(d).hexdigest(): len(d) for d in [*small, large]}
    listed = [info async for info in blob_store.iterate()]
    assert {info.sha256: info.size for info in listed} == expected
    assert all(before - 5 <= info.modified <= time.time() + 5 for info in listed)


async def test_clear_spools_spares_young_ones(blob_store: BlobStore) -> None:
    young = blob_store.spool()
    young.write(b"being received")
    assert await blob_store.clear_spools(older_than=3600) == 0
    assert await blob_store.clear_spools() == 1
