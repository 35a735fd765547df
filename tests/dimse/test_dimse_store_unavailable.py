"""C-STORE with the store on S3 and S3 down or refusing the credentials: 0xA700 Out of
Resources with a comment saying why, and nothing stored. SeaweedFS is really stopped, or
really given a wrong secret."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pydicom
import pytest
from dimse_peers import AE, HOST, DimseHub, running_dimse_hub
from pydicom.data import get_testdata_file
from pynetdicom import AE as PeerAE
from s3_server import SeaweedS3, store_fields

from hub.archive.query import Query
from hub.config import Settings

pytestmark = pytest.mark.peers

OUT_OF_RESOURCES = 0xA700
CT = Path(get_testdata_file("CT_small.dcm"))


def c_store(hub: DimseHub, ds: pydicom.Dataset) -> pydicom.Dataset:
    peer = PeerAE(ae_title="STORESCU")
    peer.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = peer.associate(HOST, hub.port, ae_title=AE)
    assert assoc.is_established
    try:
        return assoc.send_c_store(ds)
    finally:
        assoc.release()


async def assert_refused_and_not_stored(hub: DimseHub, ds: pydicom.Dataset) -> None:
    reply = await asyncio.to_thread(c_store, hub, ds)
    assert reply.Status == OUT_OF_RESOURCES
    assert "object store is unavailable" in reply.ErrorComment
    found = await hub.archive.search(
        Query(level="INSTANCE", keys={"SOPInstanceUID": ds.SOPInstanceUID})
    )
    assert found == []
    assert list(hub.settings.tmp_dir.glob("in-*.part")) == []


def settings_on(tmp_path: Path, server: SeaweedS3, **changes: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", dimse_port=0, ae_title=AE, **store_fields(server, **changes)
    )


async def test_c_store_while_s3_is_down(tmp_path: Path, own_seaweedfs: SeaweedS3) -> None:
    async with running_dimse_hub(settings_on(tmp_path, own_seaweedfs)) as hub:
        first = pydicom.dcmread(CT)
        assert (await asyncio.to_thread(c_store, hub, first)).Status == 0
        own_seaweedfs.stop()
        second = pydicom.dcmread(CT)
        second.SOPInstanceUID = pydicom.uid.generate_uid()
        await assert_refused_and_not_stored(hub, second)


async def test_c_store_with_wrong_credentials(tmp_path: Path, seaweedfs: SeaweedS3) -> None:
    settings = settings_on(tmp_path, seaweedfs, secret="not-the-secret")
    async with running_dimse_hub(settings) as hub:
        await assert_refused_and_not_stored(hub, pydicom.dcmread(CT))
