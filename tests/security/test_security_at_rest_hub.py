"""The whole hub on an encrypted store: what goes in over STOW-RS comes back byte for byte."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import aiohttp
import pydicom
import pytest
from pydicom.data import get_testdata_file

from hub.config import Settings, StorageSettings
from hub.security.at_rest import EncryptedBlobStore

SAMPLE = "emri_small.dcm"  # 10 native frames; one straddles two 64 KiB encrypted chunks


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return Settings(
        data_dir=tmp_path / "data",
        port=port,
        storage=StorageSettings(encryption_key_file=tmp_path / "store.key"),
    )


def _multipart(data: bytes, boundary: str = "tessera-test") -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


async def test_stow_then_wado_through_an_encrypted_store(hub_server) -> None:
    assert isinstance(hub_server.archive.store, EncryptedBlobStore)
    path = Path(get_testdata_file(SAMPLE))
    original = path.read_bytes()  # noqa: ASYNC240
    ds = pydicom.dcmread(path)
    headers = hub_server.admin_headers
    base = f"{hub_server.url}/dicomweb/studies"
    series = f"{base}/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    instance = f"{series}/instances/{ds.SOPInstanceUID}"
    async with aiohttp.ClientSession(headers=headers) as s:
        ctype = 'multipart/related; type="application/dicom"; boundary=tessera-test'
        async with s.post(base, data=_multipart(original), headers={"Content-Type": ctype}) as r:
            assert r.status == 200, await r.text()
        accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
        async with s.get(instance, headers=accept) as r:
            assert r.status == 200
            parts = await _parts(r)
            assert parts == [original]
        frame_accept = {
            "Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
        }
        async with s.get(instance + "/frames/1,8,10", headers=frame_accept) as r:
            assert r.status == 200
            frames = await _parts(r)
    size = len(ds.PixelData) // 10
    assert frames == [ds.PixelData[(n - 1) * size : n * size] for n in (1, 8, 10)]
    on_disk = hub_server.archive.store.inner.path(hashlib.sha256(original).hexdigest())
    assert b"DICM" not in on_disk.read_bytes()[:4096]  # noqa: ASYNC240


async def _parts(response: aiohttp.ClientResponse) -> list[bytes]:
    reader = aiohttp.MultipartReader.from_response(response)
    out = []
    while (part := await reader.next()) is not None:
        out.append(bytes(await part.read()))
    return out


async def test_rendered_and_transcoded_views_of_an_encrypted_store(hub_server) -> None:
    """Views that decode pixels must read the plaintext, not the encrypted file."""
    path = Path(get_testdata_file(SAMPLE))
    ds = pydicom.dcmread(path)
    result = await hub_server.archive.ingest_file(path, source=_source())
    assert result.ok
    instance = (
        f"{hub_server.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/"
        f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )
    async with aiohttp.ClientSession(headers=hub_server.admin_headers) as s:
        async with s.get(instance + "/frames/1/rendered", headers={"Accept": "image/png"}) as r:
            assert r.status == 200, await r.text()
            assert (await r.read()).startswith(b"\x89PNG")
        async with s.get(instance + "/thumbnail", headers={"Accept": "image/jpeg"}) as r:
            assert r.status == 200, await r.text()
        jpeg_ls = {
            "Accept": 'multipart/related; type="application/dicom"; '
            "transfer-syntax=1.2.840.10008.1.2.4.80"
        }
        async with s.get(instance, headers=jpeg_ls) as r:
            assert r.status in (200, 406), await r.text()


def _source():
    from hub.archive import Source

    return Source(door="import")
