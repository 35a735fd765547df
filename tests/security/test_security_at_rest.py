"""Encryption at rest: chunked AES-256-GCM where any byte range decrypts on its own."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from hub.archive import Archive, Source
from hub.archive.store import BlobStore
from hub.config import Settings, StorageSettings
from hub.security.at_rest import (
    DEFAULT_CHUNK,
    HEADER,
    MAGIC,
    NONCE,
    TAG,
    BlobIntegrityError,
    EncryptedBlobStore,
)

KEY = bytes(range(32))
C = DEFAULT_CHUNK


def _store(tmp_path: Path, key: bytes = KEY) -> EncryptedBlobStore:
    return EncryptedBlobStore(tmp_path / "blobs", tmp_path / "tmp", key)


def _put(store: BlobStore, data: bytes) -> str:
    fd, temp = store.new_temp()
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    sha = hashlib.sha256(data).hexdigest()
    store.commit(temp, sha)
    return sha


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 3 * C + 17])
def test_round_trip(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    store = _store(tmp_path)
    sha = _put(store, data)
    assert store.read(sha) == data
    assert b"".join(store.iter_chunks(sha, 1000)) == data
    assert store.size(sha) == size
    assert store.hash_of(sha) == sha
    assert list(store.all_hashes()) == [sha]
    assert not list((tmp_path / "tmp").iterdir())  # no plaintext left behind
    on_disk = store.path(sha).read_bytes()
    assert on_disk.startswith(MAGIC)
    assert len(on_disk) == HEADER.size + max(1, -(-size // C)) * (NONCE + TAG) + size
    if size >= 32:
        assert data[:32] not in on_disk


def test_byte_ranges_across_chunk_boundaries(tmp_path: Path) -> None:
    data = os.urandom(5 * C + 123)
    store = _store(tmp_path)
    sha = _put(store, data)
    edges = [0, C - 1, C, C + 1, 2 * C - 2, 4 * C, len(data) - 1]
    cases = [(o, n) for o in edges for n in (1, 2, 3, C, C + 2, 2 * C + 1)]
    rng = random.Random(5424)
    cases += [(rng.randrange(len(data)), rng.randrange(1, 3 * C)) for _ in range(300)]
    for offset, length in cases:
        assert store.pread(sha, offset, length) == data[offset : offset + length], (offset, length)
    assert store.pread(sha, len(data), 10) == b""  # past the end, like os.pread


def test_a_range_decrypts_only_the_chunks_it_spans(tmp_path: Path) -> None:
    data = os.urandom(4 * C)
    store = _store(tmp_path)
    sha = _put(store, data)
    record = NONCE + C + TAG
    path = store.path(sha)
    raw = bytearray(path.read_bytes())
    raw[HEADER.size + 3 * record + NONCE + 5] ^= 0x01  # damage chunk 3 only
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    store.close()
    assert store.pread(sha, C - 10, C + 20) == data[C - 10 : 2 * C + 10]  # chunks 0-1
    with pytest.raises(BlobIntegrityError, match="chunk 3"):
        store.pread(sha, 3 * C + 1, 10)


def test_swapped_or_cut_chunks_fail(tmp_path: Path) -> None:
    data = os.urandom(3 * C)
    store = _store(tmp_path)
    sha = _put(store, data)
    record = NONCE + C + TAG
    path = store.path(sha)
    path.chmod(0o644)
    raw = path.read_bytes()
    head, chunks = raw[: HEADER.size], [raw[HEADER.size + i * record :][:record] for i in range(3)]
    path.write_bytes(head + chunks[1] + chunks[0] + chunks[2])
    store.close()
    with pytest.raises(BlobIntegrityError):
        store.pread(sha, 0, 10)
    path.write_bytes(head + chunks[0] + chunks[1])  # last chunk cut off
    store.close()
    with pytest.raises(BlobIntegrityError):
        store.read(sha)


def test_wrong_key_is_refused(tmp_path: Path) -> None:
    sha = _put(_store(tmp_path), b"patient pixels" * 100)
    with pytest.raises(BlobIntegrityError, match="another key"):
        _store(tmp_path, bytes(32)).pread(sha, 0, 10)


def test_plain_blobs_from_before_still_read(tmp_path: Path) -> None:
    data = os.urandom(C + 7)
    sha = BlobStore(tmp_path / "blobs", tmp_path / "tmp").put_bytes(data)
    store = _store(tmp_path)
    assert store.pread(sha, C - 1, 5) == data[C - 1 : C + 4]
    assert store.read(sha) == data and store.size(sha) == len(data)


def test_key_file_is_created_once(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "store.key"
    first = EncryptedBlobStore(tmp_path / "b", tmp_path / "t", key_file=key_file)
    sha = _put(first, b"x" * 1000)
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    again = EncryptedBlobStore(tmp_path / "b", tmp_path / "t", key_file=key_file)
    assert again.read(sha) == b"x" * 1000


async def test_archive_serves_frames_from_an_encrypted_store(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        storage=StorageSettings(encryption_key_file=tmp_path / "store.key"),
    )
    archive = await Archive.open(settings)
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
            got = b"".join(archive.store.pread(ref.sha256, off, length) for off, length in ranges)
            assert got == pixels[n * frame : (n + 1) * frame]
            crossing += any(off // C != (off + length - 1) // C for off, length in ranges)
        assert crossing >= 1  # at least one frame straddles two encrypted chunks
        original = path.read_bytes()  # noqa: ASYNC240
        on_disk = archive.store.path(ref.sha256).read_bytes()  # noqa: ASYNC240
        assert archive.store.read(ref.sha256) == original
        assert original[128:132] == b"DICM" and b"DICM" not in on_disk[:4096]
    finally:
        await archive.close()
