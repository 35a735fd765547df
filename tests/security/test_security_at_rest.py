"""Encryption at rest: chunked AES-256-GCM where any byte range decrypts on its own, around
any store, with nothing readable left in the temp dir."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from hub.archive import Archive, Source
from hub.archive.blobs.local import LocalBlobStore
from hub.config import Settings, StorageSettings
from hub.security.at_rest import (
    DEFAULT_CHUNK,
    HEADER,
    MAGIC,
    NONCE,
    TAG,
    BlobIntegrityError,
    EncryptedBlobStore,
    load_store_key,
)
from hub.stores import open_store

KEY = bytes(range(32))
C = DEFAULT_CHUNK


FIXTURES = Path(__file__).parent / "fixtures"


def _plain(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", tmp_path / "tmp")


def _store(tmp_path: Path, key: bytes = KEY, chunk_size: int = C) -> EncryptedBlobStore:
    return EncryptedBlobStore(
        _plain(tmp_path), key, tmp_dir=tmp_path / "tmp", chunk_size=chunk_size
    )


def _on_disk(store: EncryptedBlobStore, sha: str) -> Path:
    assert isinstance(store.inner, LocalBlobStore)
    return store.inner.path(sha)


async def _put(store: EncryptedBlobStore, data: bytes) -> str:
    spool = store.spool()
    spool.write(data)
    await store.put(spool)
    return hashlib.sha256(data).hexdigest()


async def _read(store, sha: str, chunk: int = 1 << 20) -> bytes:
    return b"".join([block async for block in store.stream(sha, chunk)])


def _readable_in(directory: Path, plain: bytes) -> list[Path]:
    """Files under ``directory`` holding any 64-byte piece of ``plain``."""
    pieces = [plain[at : at + 64] for at in range(0, max(1, len(plain) - 64), 997)]
    return [
        p
        for p in directory.rglob("*")
        if p.is_file() and any(piece in p.read_bytes() for piece in pieces)
    ]


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 3 * C + 17])
async def test_round_trip(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    store = _store(tmp_path)
    sha = await _put(store, data)
    assert await _read(store, sha) == data
    assert await _read(store, sha, 1000) == data
    assert await store.size(sha) == size
    assert [info.sha256 async for info in store.iterate()] == [sha]
    assert not list((tmp_path / "tmp").iterdir())  # nothing left behind
    on_disk = _on_disk(store, sha).read_bytes()
    assert on_disk.startswith(MAGIC)
    assert len(on_disk) == HEADER.size + max(1, -(-size // C)) * (NONCE + TAG) + size
    if size >= 32:
        assert data[:32] not in on_disk


async def test_byte_ranges_across_chunk_boundaries(tmp_path: Path) -> None:
    data = os.urandom(5 * C + 123)
    store = _store(tmp_path)
    sha = await _put(store, data)
    edges = [0, C - 1, C, C + 1, 2 * C - 2, 4 * C, len(data) - 1]
    cases = [(o, n) for o in edges for n in (1, 2, 3, C, C + 2, 2 * C + 1)]
    rng = random.Random(5424)
    cases += [(rng.randrange(len(data)), rng.randrange(1, 3 * C)) for _ in range(300)]
    for offset, length in cases:
        got = await store.read_range(sha, offset, length)
        assert got == data[offset : offset + length], (offset, length)
    assert await store.read_range(sha, len(data), 10) == b""  # past the end, like os.pread
    several = await store.read_ranges(sha, cases)
    assert several == [data[o : o + n] for o, n in cases]


async def test_a_range_decrypts_only_the_chunks_it_spans(tmp_path: Path) -> None:
    data = os.urandom(4 * C)
    store = _store(tmp_path)
    sha = await _put(store, data)
    record = NONCE + C + TAG
    path = _on_disk(store, sha)
    raw = bytearray(path.read_bytes())
    raw[HEADER.size + 3 * record + NONCE + 5] ^= 0x01  # damage chunk 3 only
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    await store.close()
    assert await store.read_range(sha, C - 10, C + 20) == data[C - 10 : 2 * C + 10]  # chunks 0-1
    with pytest.raises(BlobIntegrityError, match="chunk 3"):
        await store.read_range(sha, 3 * C + 1, 10)


async def test_swapped_or_cut_chunks_fail(tmp_path: Path) -> None:
    data = os.urandom(3 * C)
    store = _store(tmp_path)
    sha = await _put(store, data)
    record = NONCE + C + TAG
    path = _on_disk(store, sha)
    path.chmod(0o644)
    raw = path.read_bytes()
    head, chunks = raw[: HEADER.size], [raw[HEADER.size + i * record :][:record] for i in range(3)]
    path.write_bytes(head + chunks[1] + chunks[0] + chunks[2])
    await store.close()
    with pytest.raises(BlobIntegrityError):
        await store.read_range(sha, 0, 10)
    path.write_bytes(head + chunks[0] + chunks[1])  # last chunk cut off
    await store.close()
    with pytest.raises(BlobIntegrityError):
        await _read(store, sha)


async def test_wrong_key_is_refused(tmp_path: Path) -> None:
    sha = await _put(_store(tmp_path), b"patient pixels" * 100)
    with pytest.raises(BlobIntegrityError, match="another key"):
        await _store(tmp_path, bytes(32)).read_range(sha, 0, 10)


async def test_plain_blobs_from_before_still_read(tmp_path: Path) -> None:
    data = os.urandom(C + 7)
    sha = await _plain(tmp_path).put_bytes(data)
    store = _store(tmp_path)
    assert await store.read_range(sha, C - 1, 5) == data[C - 1 : C + 4]
    assert await _read(store, sha) == data and await store.size(sha) == len(data)
    async with store.materialize(sha) as path:
        assert path.read_bytes() == data  # noqa: ASYNC240


async def test_blobs_sealed_by_the_previous_store_still_read(tmp_path: Path) -> None:
    """A blob written by the encrypting store before it became a wrapper (chunk size 4096),
    committed as a fixture: the layout is unchanged."""
    sha = (FIXTURES / "sealed-by-v1.sha256").read_text().strip()
    data = bytes((i * 7 + 3) % 251 for i in range(10000))
    assert hashlib.sha256(data).hexdigest() == sha
    store = _store(tmp_path)
    target = _on_disk(store, sha)
    target.parent.mkdir(parents=True)
    target.write_bytes((FIXTURES / "sealed-by-v1.blob").read_bytes())
    assert await store.read_range(sha, 4090, 20) == data[4090:4110]
    assert await _read(store, sha) == data and await store.size(sha) == len(data)


async def test_the_key_file_is_created_once(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "store.key"
    key = load_store_key(key_file)
    assert key is not None
    sha = await _put(_store(tmp_path, key), b"x" * 1000)
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert load_store_key(key_file) == key
    assert await _read(_store(tmp_path, key), sha) == b"x" * 1000


async def test_nothing_readable_in_tmp_while_an_object_is_spooled(tmp_path: Path) -> None:
    """The spool is ciphertext from the first byte (a crash leaves nothing readable), yet the
    parser reads plaintext back from it, seeking anywhere."""
    plain = Path(get_testdata_file("emri_small.dcm")).read_bytes()
    store = _store(tmp_path)
    spool = store.spool()
    half = len(plain) // 2
    spool.write(plain[:half])
    written = list((tmp_path / "tmp").iterdir())
    assert written and sum(p.stat().st_size for p in written) >= half
    assert _readable_in(tmp_path / "tmp", plain) == []
    spool.write(plain[half:])
    spool.finish()
    assert _readable_in(tmp_path / "tmp", plain) == []
    with spool.reader() as f:
        f.seek(half - 3)
        assert f.read(10) == plain[half - 3 : half + 7]
        f.seek(0)
        assert f.read() == plain
    assert await store.put(spool)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert _readable_in(tmp_path / "blobs", plain) == []
    sha = hashlib.sha256(plain).hexdigest()
    async with store.materialize(sha) as path:
        assert path.read_bytes() == plain  # noqa: ASYNC240
        assert _readable_in(tmp_path / "tmp", plain) == []  # a file without a name


async def test_nothing_readable_in_tmp_during_an_encrypted_ingest(tmp_path: Path) -> None:
    """Through the archive: while the object is being spooled and parsed, and after."""
    settings = Settings(
        data_dir=tmp_path / "data",
        storage=StorageSettings(encryption_key_file=tmp_path / "store.key"),
    )
    archive = await Archive.open(settings, store=open_store(settings))
    try:
        plain = Path(get_testdata_file("emri_small.dcm")).read_bytes()
        spool = archive.store.spool()
        for at in range(0, len(plain), 8192):
            spool.write(plain[at : at + 8192])
            assert _readable_in(settings.tmp_dir, plain) == []
        result = await archive.ingest_spool(spool, source=Source(door="import"))
        assert result.status == "stored", result.message
        assert list(settings.tmp_dir.iterdir()) == []
        assert _readable_in(settings.blob_dir, plain) == []
    finally:
        await archive.close()


async def test_archive_serves_frames_from_an_encrypted_store(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        storage=StorageSettings(encryption_key_file=tmp_path / "store.key"),
    )
    with pytest.raises(ValueError, match="encryption"):
        await Archive.open(settings)  # never opened plain by mistake
    archive = await Archive.open(settings, store=open_store(settings))
    try:
        assert isinstance(archive.store, EncryptedBlobStore)
        path = Path(get_testdata_file("emri_small.dcm"))  # 10 native frames of 8 KiB
        result = await archive.ingest_file(path, source=Source(door="import"))
        assert result.status == "stored", result.message
        ref, table = await archive.frame_table(
            result.study_uid, result.series_uid, result.sop_instance_uid
        )
        pixels = pydicom.dcmread(path).PixelData
        frame = len(pixels) // 10
        crossing = 0
        for n, ranges in enumerate(table.ranges):
            got = b"".join(await archive.store.read_ranges(ref.sha256, ranges))
            assert got == pixels[n * frame : (n + 1) * frame]
            crossing += any(off // C != (off + length - 1) // C for off, length in ranges)
        assert crossing >= 1  # at least one frame straddles two encrypted chunks
        original = path.read_bytes()  # noqa: ASYNC240
        on_disk = _on_disk(archive.store, ref.sha256).read_bytes()  # noqa: ASYNC240
        assert await _read(archive.store, ref.sha256) == original
        assert original[128:132] == b"DICM" and b"DICM" not in on_disk[:4096]
    finally:
        await archive.close()
