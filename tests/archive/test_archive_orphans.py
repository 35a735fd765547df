"""Orphan blobs: ``tessera verify --repair`` beside a serving hub must never quarantine a blob
that an ingest names meanwhile. The interleavings are placed by hand, step by step: a scan, an
identical ingest that reuses the orphan, then the repair of the (now stale) scan."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydicom.data import get_testdata_file
from s3_server import local_layout

from hub.archive import Source
from hub.archive.verify import repair_found, scan

pytestmark = local_layout  # parking is the local store's; S3 has its janitor (tests/archive/blobs)

CT = Path(get_testdata_file("CT_small.dcm")).read_bytes()
A_DAY_AGO = time.time() - 24 * 3600


def _age(path: Path) -> None:
    os.utime(path, (A_DAY_AGO, A_DAY_AGO))


async def _orphan(archive, data: bytes) -> str:
    """A whole blob that no row names, as a crash between storing and the index commit
    leaves it, a day old."""
    sha = await archive.store.put_bytes(data)
    _age(archive.store.path(sha))
    return sha


async def _read(archive, sha: str) -> bytes:
    return b"".join([block async for block in archive.store.stream(sha)])


async def test_an_identical_ingest_after_the_scan_keeps_the_blob(archive) -> None:
    sha = await _orphan(archive, CT)
    report = await scan(archive)
    assert report.orphans == [sha]
    # An identical object arrives: the store reuses the orphan and its row names it.
    result = await archive.ingest_bytes(CT, source=Source("import"))
    assert result.status == "stored" and result.sha256 == sha
    await repair_found(archive, report)
    assert report.kept == [sha]
    assert await _read(archive, sha) == CT
    assert not (archive.settings.data_dir / "quarantine" / sha).exists()
    assert (await scan(archive)).clean


async def test_a_row_named_after_the_scan_keeps_even_an_old_blob(archive) -> None:
    """Without the reuse's touch (a blob of another owner, say), the recheck of the index at
    the moment of the move keeps it."""
    sha = await _orphan(archive, CT)
    report = await scan(archive)
    assert (await archive.ingest_bytes(CT, source=Source("import"))).ok
    _age(archive.store.path(sha))
    await repair_found(archive, report)
    assert report.kept == [sha]
    assert await _read(archive, sha) == CT
    assert (await scan(archive)).clean


async def test_an_ingest_after_the_move_stores_its_own_copy(archive) -> None:
    sha = await _orphan(archive, CT)
    report = await scan(archive)
    await repair_found(archive, report)
    assert report.kept == [] and (archive.settings.data_dir / "quarantine" / sha).exists()
    assert not await archive.store.exists(sha)
    assert (await archive.ingest_bytes(CT, source=Source("import"))).status == "stored"
    assert await _read(archive, sha) == CT
    assert (await scan(archive)).clean


async def test_a_put_that_reuses_the_blob_before_its_row_keeps_it(archive) -> None:
    """An ingest stores its bytes before it takes the index lock: a repair that runs between
    that put (which finds the orphan and reuses it) and the index commit must spare it."""
    sha = await _orphan(archive, CT)
    report = await scan(archive)
    spool = archive.store.spool()
    spool.write(CT)
    assert await archive.store.put(spool) is False  # reused, and touched
    await repair_found(archive, report)
    assert report.kept == [sha]
    assert (await archive.ingest_bytes(CT, source=Source("import"))).status == "stored"
    assert await _read(archive, sha) == CT
    assert (await scan(archive)).clean


async def test_a_refused_object_leaves_an_orphan_the_repair_takes(archive) -> None:
    """The bytes are stored before the index decides; a refusal leaves them to the repair."""
    assert (await archive.ingest_bytes(CT, source=Source("import"))).status == "stored"
    changed = CT.replace(b"CompressedSamples", b"CompressedSamplez")
    assert changed != CT
    result = await archive.ingest_bytes(changed, source=Source("import"))
    assert result.status == "failed" and result.conflict
    report = await scan(archive)
    assert report.orphans == [result.sha256]
    _age(archive.store.path(result.sha256))
    await repair_found(archive, report)
    assert report.kept == [] and not await archive.store.exists(result.sha256)
    assert (await scan(archive)).clean


async def test_young_orphans_and_temp_files_are_kept_old_ones_cleared(archive) -> None:
    old = await _orphan(archive, b"left by a crash yesterday")
    young = await archive.store.put_bytes(b"just stored, its row not yet committed")
    fresh_temp = archive.store.spool()
    fresh_temp.write(b"an upload still arriving")
    stale_temp = archive.store.spool()
    _age(stale_temp.path)
    report = await scan(archive)
    assert sorted(report.orphans) == sorted([old, young]) and report.temp_files == 2
    await repair_found(archive, report)
    assert report.kept == [young] and report.temp_files == 1
    assert await archive.store.exists(young) and not await archive.store.exists(old)
    assert fresh_temp.path.exists() and not stale_temp.path.exists()
