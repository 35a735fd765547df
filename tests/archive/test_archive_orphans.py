"""Orphan blobs: ``tessera verify --repair`` beside a serving hub must never quarantine a blob
that an ingest names meanwhile. The interleavings are placed by hand, step by step: a scan, an
identical ingest that reuses the orphan, then the repair of the (now stale) scan."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydicom.data import get_testdata_file

from hub.archive import Source
from hub.archive.verify import repair_found, scan

CT = Path(get_testdata_file("CT_small.dcm")).read_bytes()
A_DAY_AGO = time.time() - 24 * 3600


def _age(path: Path) -> None:
    os.utime(path, (A_DAY_AGO, A_DAY_AGO))


def _orphan(archive, data: bytes) -> str:
    """A whole blob that no row names, as a crash between blob rename and index commit
    leaves it, a day old."""
    sha = archive.store.put_bytes(data)
    _age(archive.store.path(sha))
    return sha


async def test_an_identical_ingest_after_the_scan_keeps_the_blob(archive) -> None:
    sha = _orphan(archive, CT)
    report = await scan(archive)
    assert report.orphans == [sha]
    # An identical object arrives: the store reuses the orphan and its row names it.
    result = await archive.ingest_bytes(CT, source=Source("import"))
    assert result.status == "stored" and result.sha256 == sha
    await repair_found(archive, report)
    assert report.kept == [sha]
    assert archive.store.read(sha) == CT
    assert not (archive.settings.data_dir / "quarantine" / sha).exists()
    assert (await scan(archive)).clean


async def test_a_row_named_after_the_scan_keeps_even_an_old_blob(archive) -> None:
    """Without the reuse's touch (a blob of another owner, say), the recheck of the index at
    the moment of the move keeps it."""
    sha = _orphan(archive, CT)
    report = await scan(archive)
    assert (await archive.ingest_bytes(CT, source=Source("import"))).ok
    _age(archive.store.path(sha))
    await repair_found(archive, report)
    assert report.kept == [sha]
    assert archive.store.read(sha) == CT
    assert (await scan(archive)).clean


async def test_an_ingest_after_the_move_stores_its_own_copy(archive) -> None:
    sha = _orphan(archive, CT)
    report = await scan(archive)
    await repair_found(archive, report)
    assert report.kept == [] and (archive.settings.data_dir / "quarantine" / sha).exists()
    assert not archive.store.exists(sha)
    assert (await archive.ingest_bytes(CT, source=Source("import"))).status == "stored"
    assert archive.store.read(sha) == CT
    assert (await scan(archive)).clean


async def test_young_orphans_and_temp_files_are_kept_old_ones_cleared(archive) -> None:
    old = _orphan(archive, b"left by a crash yesterday")
    young = archive.store.put_bytes(b"just renamed, its row not yet committed")
    fd, fresh_temp = archive.store.new_temp()
    os.close(fd)
    fd, stale_temp = archive.store.new_temp()
    os.close(fd)
    _age(stale_temp)
    report = await scan(archive)
    assert sorted(report.orphans) == sorted([old, young]) and report.temp_files == 2
    await repair_found(archive, report)
    assert report.kept == [young] and report.temp_files == 1
    assert archive.store.exists(young) and not archive.store.exists(old)
    assert fresh_temp.exists() and not stale_temp.exists()
