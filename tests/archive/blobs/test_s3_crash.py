"""SIGKILL ``tessera serve`` during the multipart upload to S3 of a 200 MB object received by
STOW-RS: after a restart there is no index row and no visible object, resending succeeds, and
the janitor aborts the abandoned upload once the grace period is over. A relay in front of
SeaweedFS holds one part back, so that the kill lands with the upload surely in progress."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from pathlib import Path

import aiohttp
import numpy as np
import pydicom
import pytest
from hubtest import HubProcess, bearer_for, free_port
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from relay import Relay
from s3_server import SeaweedS3, prefix_of, store_fields

from hub.archive.blobs.janitor import S3Janitor, index_names
from hub.archive.blobs.s3 import S3BlobStore, S3Settings
from hub.archive.index import make_engine
from hub.config import Settings

BOUNDARY = "big-object"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
FRAMES, ROWS, COLUMNS = 200, 1000, 1000  # 200 MB of 8-bit pixels
MULTIFRAME_SC = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte Secondary Capture


def big_object(path: Path) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = MULTIFRAME_SC
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "BIG-1", "Big^Object", "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, FRAMES
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    pixels = np.random.default_rng(7).integers(0, 256, FRAMES * ROWS * COLUMNS, dtype=np.uint8)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def env_of(server: SeaweedS3, prefix: str, endpoint: str) -> dict[str, str]:
    """The environment of a ``tessera serve`` on ``server`` under ``prefix``, through
    ``endpoint`` (the server's own, or a relay in front of it)."""
    return {**server.env(), "TESSERA_S3_PREFIX": prefix, "TESSERA_S3_ENDPOINT": endpoint}


async def stow(url: str, auth: dict[str, str], path: Path) -> int:
    async def body():
        yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        with open(path, "rb") as f:  # noqa: ASYNC230 (a test's local file, read in blocks)
            while block := f.read(1 << 20):
                yield block
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    timeout = aiohttp.ClientTimeout(total=300)
    async with (
        aiohttp.ClientSession(headers=auth, timeout=timeout) as session,
        session.post(
            url + "/dicomweb/studies", data=body(), headers={"Content-Type": STOW_TYPE}
        ) as r,
    ):
        return r.status


async def instances(url: str, auth: dict[str, str], sop_uid: str) -> list:
    async with (
        aiohttp.ClientSession(headers=auth) as session,
        session.get(url + f"/dicomweb/instances?SOPInstanceUID={sop_uid}") as r,
    ):
        assert r.status in (200, 204)
        return [] if r.status == 204 else await r.json()


async def wait_for(condition, what: str, timeout: float = 240.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.mark.timeout(900)
async def test_sigkill_during_a_big_upload(seaweedfs: SeaweedS3, tmp_path: Path) -> None:
    source = tmp_path / "big.dcm"
    ds = await asyncio.to_thread(big_object, source)
    sha = await asyncio.to_thread(lambda: hashlib.sha256(source.read_bytes()).hexdigest())
    prefix = prefix_of(store_fields(seaweedfs))
    direct = S3BlobStore(
        S3Settings(
            endpoint=seaweedfs.endpoint,
            bucket=seaweedfs.bucket,
            access_key=seaweedfs.access_key,
            secret_key=seaweedfs.secret_key,
            region=seaweedfs.region,
            prefix=prefix,
            allow_http=True,
        ),
        tmp_path / "direct",
    )
    janitor = S3Janitor(direct, grace=3600)
    data, port = tmp_path / "data", free_port()
    auth = bearer_for(data, "sender", "admin")
    upstream = int(seaweedfs.endpoint.rsplit(":", 1)[1])

    async with Relay(upstream, b"partNumber=", mode="stall") as relay:
        hub = HubProcess(data, port, env=env_of(seaweedfs, prefix, relay.endpoint))
        sending = asyncio.ensure_future(stow(hub.url, auth, source))
        try:

            async def mid_upload() -> bool:
                return relay.tampered > 0 and bool(await janitor.uploads())

            await wait_for(mid_upload, "a part of the upload on its way")
        finally:
            hub.proc.send_signal(signal.SIGKILL)
            hub.proc.wait()
            with pytest.raises(aiohttp.ClientError):
                await sending
    assert hub.proc.returncode == -signal.SIGKILL

    hub = HubProcess(data, port, env=env_of(seaweedfs, prefix, seaweedfs.endpoint))
    try:
        assert await instances(hub.url, auth, ds.SOPInstanceUID) == []  # no index row
        assert not await direct.exists(sha)  # no visible object
        assert [info async for info in direct.iterate()] == []
        (upload,) = await janitor.uploads()  # the leftover: parts of the abandoned upload
        assert upload.key.endswith(sha)

        assert await stow(hub.url, auth, source) == 200  # resending succeeds
        assert len(await instances(hub.url, auth, ds.SOPInstanceUID)) == 1
        assert await direct.size(sha) == source.stat().st_size
    finally:
        hub.stop()

    engine = make_engine(Settings.from_env(data_dir=data).db_url)  # the hub's own index
    try:
        assert (await janitor.sweep(*index_names(engine))).aborted == []  # within the grace
        swept = await S3Janitor(direct, grace=0).sweep(*index_names(engine))
    finally:
        await engine.dispose()
    assert swept.aborted == [upload] and swept.removed == []  # the named object stays
    assert await janitor.uploads() == []
    assert await direct.exists(sha)
    os.remove(source)
