"""The local file spool: private, hashed while written, gone once discarded."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from hub.archive.blobs.spool import FileSpool, clear_spools


def test_a_spool_is_private_and_hashed_while_written(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path)
    assert spool.path.stat().st_mode & 0o777 == 0o600
    parts = [os.urandom(n) for n in (1, 1000, 70_000)]
    for part in parts:
        spool.write(part)
    whole = b"".join(parts)
    assert spool.finish() == (hashlib.sha256(whole).hexdigest(), len(whole))
    assert spool.finish() == (hashlib.sha256(whole).hexdigest(), len(whole))
    with spool.reader() as r:
        r.seek(1000)
        assert r.read() == whole[1000:]
    with pytest.raises(ValueError):
        spool.write(b"late")
    spool.discard()
    spool.discard()
    assert not spool.path.exists()


def test_an_unfinished_spool_can_be_discarded(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path)
    spool.write(b"half an upload")
    spool.discard()
    assert list(tmp_path.iterdir()) == []


def test_clear_spools_spares_young_ones_and_other_files(tmp_path: Path) -> None:
    old, young = FileSpool(tmp_path), FileSpool(tmp_path)
    a_day_ago = time.time() - 86400
    os.utime(old.path, (a_day_ago, a_day_ago))
    (tmp_path / "keep.txt").write_text("not a spool")
    assert clear_spools(tmp_path, older_than=3600) == 1
    assert not old.path.exists() and young.path.exists()
    assert clear_spools(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    old.discard()
    young.discard()


def test_part_digests_do_not_depend_on_how_the_bytes_were_written(tmp_path: Path) -> None:
    data = os.urandom(2500)
    expected = [hashlib.sha256(data[i : i + 1000]).digest() for i in (0, 1000, 2000)]
    for step in (1, 7, 1000, 1001, 2500):
        spool = FileSpool(tmp_path, part_size=1000)
        for start in range(0, len(data), step):
            spool.write(data[start : start + step])
        assert spool.part_digests() == expected
        spool.discard()
    assert FileSpool(tmp_path).part_digests() == []
