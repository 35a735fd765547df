"""Frames from a store on S3 equal pydicom's: cold (the node's cache emptied, every chunk
fetched from S3) and warm (served from the cache, with S3 stopped to show it), plain and
encrypted at rest."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pydicom
import pytest
from dicomweb_support import STOW_TYPE, multipart_body
from hubtest import free_port, running_hub
from s3_server import SeaweedS3, store_fields
from test_dicomweb_wado import CINE, RAW_ANY, parts, url_of

from hub.config import Settings

FRAMES = [1, 2, 37, 60, 119, 120]
EXPECTED = list(
    pydicom.encaps.generate_frames(pydicom.dcmread(CINE).PixelData, number_of_frames=120)
)


def chunk_files(cache: Path) -> int:
    return sum(1 for p in cache.rglob("*") if p.is_file() and p.suffix != ".claim")


async def frames(hub) -> list[bytes]:
    url = url_of(hub, CINE) + "/frames/" + ",".join(map(str, FRAMES))
    async with hub.session() as session, session.get(url, headers={"Accept": RAW_ANY}) as r:
        assert r.status == 200
        return [payload for _, payload in parts(r.headers, await r.read())]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_frames_cold_and_warm(tmp_path: Path, own_seaweedfs: SeaweedS3, encrypted: bool):
    (storage,) = store_fields(own_seaweedfs).values()
    if encrypted:
        storage = dataclasses.replace(storage, encryption_key_file=tmp_path / "store.key")
    settings = Settings(data_dir=tmp_path / "data", port=free_port(), storage=storage)
    cache = settings.data_dir / "cache"
    wanted = [EXPECTED[n - 1] for n in FRAMES]
    async with running_hub(settings) as hub:
        body = multipart_body([("application/dicom", CINE.read_bytes())])
        async with (
            hub.session() as session,
            session.post(
                hub.url + "/dicomweb/studies", data=body, headers={"Content-Type": STOW_TYPE}
            ) as r,
        ):
            assert r.status == 200
        assert chunk_files(cache) > 0  # filled at ingest
        shutil.rmtree(cache)  # as on another node, or after eviction
        assert await frames(hub) == wanted  # cold: fetched from S3
        fetched = chunk_files(cache)
        assert fetched > 0
        own_seaweedfs.stop()
        assert await frames(hub) == wanted  # warm: from the cache alone
        assert chunk_files(cache) == fetched
