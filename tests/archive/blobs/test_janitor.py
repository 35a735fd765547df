"""The janitor: abandoned multipart uploads and objects that no index row names."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path

import pytest
from blob_kinds import TEST_PART_SIZE, s3_settings
from pydicom.data import get_testdata_file
from relay import Relay
from s3_server import SeaweedS3, store_fields

from hub.archive import Archive, Source
from hub.archive.blobs.janitor import S3Janitor, index_names
from hub.archive.blobs.s3 import S3BlobStore, S3Settings
from hub.archive.verify import repair_found, scan
from hub.config import Settings
from hub.stores import open_store

CT = Path(get_testdata_file("CT_small.dcm")).read_bytes()
ROOT = Path(__file__).resolve().parents[3]

# A hub process uploading one big object: put() of a file named on the command line.
UPLOADER = """
import asyncio, json, sys
from pathlib import Path
from hub.archive.blobs.s3 import S3BlobStore, S3Settings
from hub.archive.verify import repair_found, scan
from hub.config import Settings
from hub.stores import open_store

async def main():
    store = S3BlobStore(S3Settings(**json.loads(sys.argv[1])), Path(sys.argv[2]))
    spool = store.spool()
    spool.write(Path(sys.argv[3]).read_bytes())
    spool.finish()
    await store.put(spool)

asyncio.run(main())
"""


@pytest.fixture
async def store(seaweedfs: SeaweedS3, tmp_path: Path) -> AsyncIterator[S3BlobStore]:
    s = S3BlobStore(s3_settings(seaweedfs), tmp_path / "spool")
    yield s
    await s.close()


async def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_an_upload_killed_midway_is_aborted_after_the_grace_period(
    seaweedfs: SeaweedS3, store: S3BlobStore, tmp_path: Path
) -> None:
    data = os.urandom(3 * TEST_PART_SIZE)
    source = tmp_path / "slide.dcm"
    source.write_bytes(data)
    janitor = S3Janitor(store, grace=3600)
    upstream = int(seaweedfs.endpoint.rsplit(":", 1)[1])
    async with Relay(upstream, b"partNumber=", mode="stall") as relay:
        settings = S3Settings(**{**asdict(store.settings), "endpoint": relay.endpoint})
        uploader = subprocess.Popen(
            [
                sys.executable,
                "-c",
                UPLOADER,
                json.dumps(asdict(settings)),
                str(tmp_path / "up"),
                str(source),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            await wait_for(lambda: _mid_upload(janitor, relay), "a part of the upload on its way")
        finally:
            uploader.send_signal(signal.SIGKILL)
            uploader.wait()
    assert relay.tampered >= 1
    sha = hashlib.sha256(data).hexdigest()
    assert not await store.exists(sha)
    [upload] = await janitor.uploads()
    assert upload.key.endswith(sha)

    assert await janitor.abort_abandoned_uploads() == []  # within the grace period
    assert len(await janitor.uploads()) == 1
    assert await S3Janitor(store, grace=0).abort_abandoned_uploads() == [upload]
    assert await janitor.uploads() == []

    # Resending succeeds.
    assert await store.put_bytes(data) == sha
    assert (
        await store.read_range(sha, TEST_PART_SIZE - 3, 6)
        == data[TEST_PART_SIZE - 3 : TEST_PART_SIZE + 3]
    )


async def _mid_upload(janitor: S3Janitor, relay: Relay) -> bool:
    """The upload has begun and a part of it is held up in the relay."""
    return relay.tampered > 0 and bool(await janitor.uploads())


async def test_unnamed_objects_go_after_the_grace_period(store: S3BlobStore) -> None:
    named, orphan, late = [await store.put_bytes(d) for d in (b"named", b"orphan", b"late")]
    rows = {named}

    async def all_names() -> set[str]:
        return set(rows)

    async def is_named(sha: str) -> bool:
        # A row for ``late`` is committed between the janitor's scan and its delete.
        rows.add(late)
        return sha in rows

    assert await S3Janitor(store, grace=3600).remove_unnamed(all_names, is_named) == []
    removed = await S3Janitor(store, grace=0).remove_unnamed(all_names, is_named)
    assert removed == [orphan]
    assert {i.sha256 async for i in store.iterate()} == {named, late}


async def test_the_index_names_what_the_janitor_keeps(archive, store: S3BlobStore) -> None:
    result = await archive.ingest_bytes(CT, source=Source("import"))
    assert await store.put_bytes(CT) == result.sha256
    orphan = await store.put_bytes(b"no row names this")
    sweep = await S3Janitor(store, grace=0).sweep(*index_names(archive.engine))
    assert sweep.removed == [orphan] and sweep.aborted == []
    assert await store.exists(result.sha256)


async def test_verify_repair_sweeps_the_bucket(seaweedfs: SeaweedS3, tmp_path: Path) -> None:
    """``tessera verify --repair`` on an archive whose store is on S3 (behind the cache, as
    ``tessera serve`` builds it): the orphan goes after the grace period, the named object
    stays, and neither the index nor the cache names the orphan any more."""
    settings = Settings(data_dir=tmp_path / "data", **store_fields(seaweedfs))
    archive = await Archive.open(settings, store=open_store(settings))
    try:
        result = await archive.ingest_bytes(CT, source=Source("import"))
        orphan = await archive.store.put_bytes(b"left by a crash before the index commit")
        report = await scan(archive)
        assert report.orphans == [orphan]
        await repair_found(archive, report)  # within the grace period: kept
        assert report.kept == [orphan] and await archive.store.exists(orphan)
        report = await scan(archive)
        await repair_found(archive, report, grace=0)
        assert report.kept == []
        assert not await archive.store.exists(orphan)
        assert await archive.store.exists(result.sha256)
        assert (await scan(archive)).clean
    finally:
        await archive.close()
