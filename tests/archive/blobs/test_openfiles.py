"""Descriptors kept open across reads are closed only when no read holds them: a descriptor
closed under a read can get its number reused by the next open, and the read then returns
another file's bytes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from hub.archive.blobs.local import LocalBlobStore
from hub.archive.blobs.openfiles import OpenFiles


def _files(tmp_path: Path, count: int) -> list[Path]:
    paths = []
    for n in range(count):
        path = tmp_path / f"f{n}"
        path.write_bytes(bytes([n]) * 4096)
        paths.append(path)
    return paths


def _opener(key: Path) -> int:
    return os.open(key, os.O_RDONLY)


def test_a_descriptor_evicted_while_held_keeps_reading_its_own_file(tmp_path: Path) -> None:
    first, *others = _files(tmp_path, 4)
    files: OpenFiles[Path] = OpenFiles(limit=1)
    with files.use(first, _opener) as held:
        for other in others:  # each evicts the one before, the held one first
            with files.use(other, _opener):
                pass
        files.forget(lambda _: True)
        reopened = [os.open(p, os.O_RDONLY) for p in others]  # would take a freed number
        try:
            assert os.pread(held.fd, 4, 0) == b"\x00" * 4
        finally:
            for fd in reopened:
                os.close(fd)
    assert files.descriptors() == []
    try:
        os.fstat(held.fd)
    except OSError:
        pass  # closed once the read let go
    else:
        raise AssertionError(f"descriptor {held.fd} of {first} was left open")


def test_the_bound_holds_for_descriptors_nobody_reads(tmp_path: Path) -> None:
    files: OpenFiles[Path] = OpenFiles(limit=2)
    for path in _files(tmp_path, 5):
        with files.use(path, _opener):
            pass
    assert len(files.descriptors()) == 2
    files.close()
    assert files.descriptors() == []


async def test_concurrent_reads_over_few_open_files_return_their_own_bytes(
    tmp_path: Path,
) -> None:
    store = LocalBlobStore(tmp_path / "blobs", tmp_path / "tmp", open_files=2, inline_read_limit=0)
    blobs = {}
    for n in range(12):
        data = bytes([n]) * (64 << 10)
        blobs[await store.put_bytes(data)] = data
    names = list(blobs) * 40
    reads = [store.read_range(name, (i * 4096) % (60 << 10), 4096) for i, name in enumerate(names)]
    got = await asyncio.gather(*reads)
    wrong = [name for name, data in zip(names, got, strict=True) if data != blobs[name][:4096]]
    await store.close()
    assert not wrong, f"{len(wrong)} reads returned another blob's bytes"
