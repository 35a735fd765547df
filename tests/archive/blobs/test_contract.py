"""The ``BlobStore`` contract, run on every kind of store registered in ``blob_kinds.KINDS``."""

from __future__ import annotations

import hashlib
import os
import random

import pytest
from blob_kinds import SEAL_CHUNK, TEST_PART_SIZE, StoreKind

from hub.archive.blobs import CHUNK, BlobIntegrityError, BlobMissing, BlobStore, Parking, Spool
from hub.archive.blobs.spool import FileSpool
from hub.archive.verify import intact

DATA = random.Random(13).randbytes(5 * SEAL_CHUNK + 123)
SHA = hashlib.sha256(DATA).hexdigest()
ABSENT = hashlib.sha256(b"never stored").hexdigest()


async def _put(store: BlobStore, data: bytes, pieces: int = 3) -> bool:
    spool = store.spool()
    step = max(1, len(data) // pieces)
    for at in range(0, len(data), step):
        spool.write(data[at : at + step])
    assert spool.finish() == (hashlib.sha256(data).hexdigest(), len(data))
    return await store.put(spool)


async def _read_all(store: BlobStore, sha256: str, chunk: int = CHUNK) -> bytes:
    return b"".join([block async for block in store.stream(sha256, chunk)])


async def test_put_is_idempotent(store: BlobStore) -> None:
    assert await _put(store, DATA) is True
    assert await _put(store, DATA) is False
    assert await store.put_bytes(DATA) == SHA
    assert await store.exists(SHA)
    assert await store.size(SHA) == len(DATA)
    assert [info.sha256 async for info in store.iterate()] == [SHA]
    assert await _read_all(store, SHA) == DATA
    assert await store.clear_spools() == 0  # nothing left of the three writes


async def test_empty_and_tiny_objects(store: BlobStore) -> None:
    for data in (b"", b"x"):
        sha = await store.put_bytes(data)
        assert sha == hashlib.sha256(data).hexdigest()
        assert await store.size(sha) == len(data)
        assert await _read_all(store, sha) == data
        assert await store.read_range(sha, 0, 10) == data


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, 1),
        (0, SEAL_CHUNK),
        (SEAL_CHUNK - 1, 2),  # across one boundary
        (SEAL_CHUNK - 10, 2 * SEAL_CHUNK + 20),  # across two
        (3 * SEAL_CHUNK, SEAL_CHUNK),  # exactly one chunk
        (len(DATA) - 5, 100),  # short at the end
        (len(DATA), 10),  # past the end
        (17, 0),
    ],
)
async def test_read_range(store: BlobStore, offset: int, length: int) -> None:
    await _put(store, DATA)
    assert await store.read_range(SHA, offset, length) == DATA[offset : offset + length]


async def test_read_ranges_of_one_object(store: BlobStore) -> None:
    await _put(store, DATA)
    rng = random.Random(7)
    ranges = [(rng.randrange(len(DATA)), rng.randrange(1, 3 * SEAL_CHUNK)) for _ in range(40)]
    ranges += [(0, 0), (len(DATA) + 5, 3), (SEAL_CHUNK - 3, 6)]
    got = await store.read_ranges(SHA, ranges)
    assert got == [DATA[o : o + n] for o, n in ranges]


async def test_ranges_across_part_boundaries(store: BlobStore) -> None:
    part = TEST_PART_SIZE  # an S3 store uploads this object in three parts
    data = random.Random(5).randbytes(2 * part + 12345)
    sha = hashlib.sha256(data).hexdigest()
    assert await _put(store, data) is True
    for offset, length in [(part - 10, 20), (2 * part - 1, 2), (0, len(data)), (part, part)]:
        assert await store.read_range(sha, offset, length) == data[offset : offset + length]
    ranges = [(0, 100), (part - 5, 10), (part + 100, 32 << 10), (2 * part - 7, 7), (10, 20)]
    assert await store.read_ranges(sha, ranges) == [data[o : o + n] for o, n in ranges]
    assert await _read_all(store, sha) == data


@pytest.mark.parametrize("chunk", [1000, SEAL_CHUNK, CHUNK])
async def test_stream(store: BlobStore, chunk: int) -> None:
    await _put(store, DATA)
    blocks = [block async for block in store.stream(SHA, chunk)]
    assert b"".join(blocks) == DATA
    assert all(blocks)


async def test_a_missing_object(store: BlobStore) -> None:
    assert not await store.exists(ABSENT)
    with pytest.raises(BlobMissing):
        await store.read_range(ABSENT, 0, 10)
    with pytest.raises(BlobMissing):
        await store.read_ranges(ABSENT, [(0, 10), (20, 5)])
    with pytest.raises(BlobMissing):
        await store.size(ABSENT)
    with pytest.raises(BlobMissing):
        await _read_all(store, ABSENT)
    with pytest.raises(BlobMissing):
        async with store.materialize(ABSENT):
            pass


async def test_delete(store: BlobStore) -> None:
    await _put(store, DATA)
    kept = await store.put_bytes(b"another object")
    await store.read_range(SHA, 0, 10)  # reads may keep the object open
    await store.delete(SHA)
    assert not await store.exists(SHA)
    with pytest.raises(BlobMissing):
        await store.read_range(SHA, 0, 10)
    assert [info.sha256 async for info in store.iterate()] == [kept]
    await store.delete(SHA)  # deleting what is gone is no error
    assert await _put(store, DATA) is True  # and it can be stored again


async def test_iterate(store: BlobStore) -> None:
    objects = {await store.put_bytes(os.urandom(n)): n for n in (1, 100, 3 * SEAL_CHUNK)}
    listed = {info.sha256: info async for info in store.iterate()}
    assert set(listed) == set(objects)
    assert all(info.size >= objects[sha] and info.modified > 0 for sha, info in listed.items())


async def test_materialize(store: BlobStore) -> None:
    await _put(store, DATA)
    async with store.materialize(SHA) as path:
        assert path.read_bytes() == DATA  # noqa: ASYNC240 (a test reading its own file)


async def test_spool_reader_and_discard(store: BlobStore) -> None:
    spool = store.spool()
    spool.write(DATA[:1000])
    spool.write(DATA[1000:])
    spool.finish()
    with spool.reader() as f:
        f.seek(SEAL_CHUNK - 7)
        assert f.read(20) == DATA[SEAL_CHUNK - 7 : SEAL_CHUNK + 13]
        f.seek(-5, os.SEEK_END)
        assert f.read() == DATA[-5:]
        f.seek(0)
        assert f.read() == DATA
    spool.discard()
    spool.discard()  # idempotent
    assert await store.clear_spools() == 0
    assert not await store.exists(SHA)


async def test_abandoned_spools_are_cleared(store: BlobStore) -> None:
    young = store.spool()
    young.write(b"still arriving")
    assert await store.clear_spools(older_than=3600) == 0
    assert await store.clear_spools() == 1


async def test_a_corrupted_object_is_refused(store: BlobStore, store_kind: StoreKind) -> None:
    await _put(store, DATA)
    assert await intact(store, SHA)
    await store_kind.corrupt(store, SHA)
    assert not await intact(store, SHA)  # what ``tessera verify`` reports as corrupt
    if store_kind.encrypted:
        with pytest.raises(BlobIntegrityError):
            await store.read_range(SHA, 0, len(DATA))


@pytest.mark.parametrize("size", [100_000, 2 * TEST_PART_SIZE + 5], ids=["one-part", "multipart"])
async def test_a_spool_changed_after_hashing_is_refused(store: BlobStore, size: int) -> None:
    """A put stores the bytes its spool hashed while they were written, or nothing: a spool
    file that no longer holds them (a fault of the local disk, provoked here by flipping a
    byte of it) is refused, and nothing is left under the name."""
    data = random.Random(size).randbytes(size)
    spool = store.spool()
    spool.write(data)
    assert spool.finish() == (hashlib.sha256(data).hexdigest(), size)
    _flip_byte(_file_of(spool), size // 2)
    with pytest.raises(BlobIntegrityError) as refused:
        await store.put(spool)
    sha = hashlib.sha256(data).hexdigest()
    assert sha in str(refused.value)
    assert not await store.exists(sha)
    assert [info async for info in store.iterate()] == []
    assert await store.clear_spools() == 0
    assert await _put(store, data) is True  # the same bytes from a sound spool are taken
    assert await _read_all(store, sha) == data


def _file_of(spool: Spool) -> FileSpool:
    """The local file under a spool's wrappers (an encrypting one writes its ciphertext there,
    byte for byte in place of the plaintext)."""
    while not isinstance(spool, FileSpool):
        spool = spool.inner  # type: ignore[attr-defined]
    return spool


def _flip_byte(spool: FileSpool, offset: int) -> None:
    with open(spool.path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))


async def test_a_put_that_reuses_an_object_refreshes_it(
    store: BlobStore, store_kind: StoreKind
) -> None:
    if store_kind.age is None:
        pytest.skip("this kind of store cannot be aged from a test")
    await _put(store, DATA)
    await store_kind.age(store, SHA, 86400)
    (before,) = [info.modified async for info in store.iterate()]
    assert await _put(store, DATA) is False
    (after,) = [info.modified async for info in store.iterate()]
    assert after - before > 3600


async def test_parking(store: BlobStore, store_kind: StoreKind) -> None:
    if not isinstance(store, Parking) or store_kind.age is None:
        pytest.skip("this kind of store leaves orphans to its janitor")
    await _put(store, DATA)
    assert not await store.park(SHA, grace=3600)  # too young
    await store_kind.age(store, SHA, 86400)
    assert await store.park(SHA, grace=3600)
    assert not await store.exists(SHA)
    assert await _put(store, DATA) is True  # a put after the park stores its own copy
    await store.unpark(SHA)  # the copy is as good
    assert await _read_all(store, SHA) == DATA
    await store_kind.age(store, SHA, 86400)
    assert await store.park(SHA, grace=3600)
    await store.unpark(SHA)
    assert await _read_all(store, SHA) == DATA
