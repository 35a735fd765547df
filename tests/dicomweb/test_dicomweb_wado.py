"""WADO-RS: metadata, frames, bulk data, rendered, thumbnails, caching and negotiation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import aiohttp
import numpy as np
import pydicom
import pytest
from dicomweb_support import STOW_TYPE, multipart_body
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import pixel_array

CINE = Path(get_testdata_file("color3d_jpeg_baseline.dcm"))  # 120-frame JPEG ultrasound
CT = Path(get_testdata_file("CT_small.dcm"))
RAW_ANY = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@pytest.fixture
async def loaded(hub_server):
    async with hub_server.session() as session:
        body = multipart_body([("application/dicom", p.read_bytes()) for p in (CINE, CT)])
        async with session.post(
            hub_server.url + "/dicomweb/studies", data=body, headers={"Content-Type": STOW_TYPE}
        ) as r:
            assert r.status == 200
    AUTH.clear()
    AUTH.update(hub_server.admin_headers)
    return hub_server


def url_of(hub, path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return (
        f"{hub.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


AUTH: dict[str, str] = {}


async def get(url: str, accept: str | None = None, **headers) -> tuple[int, dict, bytes]:
    if accept:
        headers["Accept"] = accept
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.get(url, headers=headers) as r,
    ):
        return r.status, r.headers.copy(), await r.read()


def parts(headers: dict, body: bytes) -> list[tuple[str, bytes]]:
    boundary = headers["Content-Type"].split("boundary=")[1].split(";")[0].strip('"').encode()
    out = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, payload = chunk[2:].partition(b"\r\n\r\n")
        out.append((head.decode().split(":", 1)[1].strip(), payload[:-2]))
    return out


async def test_metadata_at_three_levels_with_bulk_data(loaded) -> None:
    url = url_of(loaded, CINE)
    status, headers, body = await get(url + "/metadata")
    assert status == 200 and headers["Content-Type"].startswith("application/dicom+json")
    (meta,) = json.loads(body)
    assert meta["00280008"]["Value"] == [120]
    pixel_uri = meta["7FE00010"]["BulkDataURI"]
    assert pixel_uri.startswith(url)
    series_url = url.rsplit("/instances/", 1)[0]
    study_url = series_url.rsplit("/series/", 1)[0]
    for level_url in (series_url, study_url):
        status, _, body = await get(level_url + "/metadata")
        assert status == 200 and len(json.loads(body)) == 1
    status, headers, body = await get(pixel_uri, RAW_ANY)
    assert status == 200 and len(parts(headers, body)) == 120


async def test_frames_one_and_several_equal_pydicom(loaded) -> None:
    url = url_of(loaded, CINE)
    expected = list(
        pydicom.encaps.generate_frames(pydicom.dcmread(CINE).PixelData, number_of_frames=120)
    )
    status, headers, body = await get(url + "/frames/1,5,120", RAW_ANY)
    assert status == 200
    got = parts(headers, body)
    assert [p for _, p in got] == [expected[0], expected[4], expected[119]]
    assert all(
        ctype.startswith("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.50")
        for ctype, _ in got
    )
    status, headers, body = await get(url + "/frames/7", 'multipart/related; type="image/jpeg"')
    assert status == 200 and parts(headers, body)[0] == (
        "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50",
        expected[6],
    )
    status, headers, body = await get(url + "/frames/7", "image/jpeg")
    assert (
        status == 200 and headers["Content-Type"].startswith("image/jpeg") and body == expected[6]
    )


async def test_frame_decoded_to_explicit_little_endian(loaded) -> None:
    url = url_of(loaded, CINE)
    accept = (
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'
    )
    status, headers, body = await get(url + "/frames/3", accept)
    assert status == 200
    ((ctype, payload),) = parts(headers, body)
    assert "1.2.840.10008.1.2.1" in ctype
    assert payload == np.ascontiguousarray(pixel_array(CINE, index=2)).tobytes()


async def test_unavailable_syntax_is_406(loaded) -> None:
    url = url_of(loaded, CINE)
    status, headers, _ = await get(url + "/frames/1", 'multipart/related; type="image/jp2"')
    assert status == 406 and "Warning" in headers
    status, _, _ = await get(
        url, 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80'
    )
    assert status == 406


async def test_bad_frame_numbers(loaded) -> None:
    url = url_of(loaded, CINE)
    assert (await get(url + "/frames/0", RAW_ANY))[0] == 404
    assert (await get(url + "/frames/121", RAW_ANY))[0] == 404
    assert (await get(url + "/frames/a,b", RAW_ANY))[0] == 400
    assert (await get(url.replace("/instances/", "/instances/9") + "/frames/1", RAW_ANY))[0] == 404


async def test_native_frames_and_instance_transcode(loaded) -> None:
    url = url_of(loaded, CT)
    status, headers, body = await get(
        url + "/frames/1", 'multipart/related; type="application/octet-stream"'
    )
    assert status == 200
    assert parts(headers, body)[0][1] == pydicom.dcmread(CT).PixelData
    status, headers, body = await get(
        url, 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
    )
    assert status == 200
    ((_, payload),) = parts(headers, body)
    ds = pydicom.dcmread(io.BytesIO(payload))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(ds.pixel_array, pydicom.dcmread(CT).pixel_array)


async def test_rendered_and_thumbnail(loaded) -> None:
    url = url_of(loaded, CINE)
    status, headers, body = await get(
        url + "/frames/10/rendered?viewport=320,240&quality=80", "image/jpeg"
    )
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(body))
    assert image.size == (320, 240)
    reference = Image.fromarray(pixel_array(CINE, index=9)).resize((320, 240))
    diff = np.abs(np.asarray(image, float) - np.asarray(reference, float)).mean()
    assert diff < 12
    status, headers, body = await get(url_of(loaded, CT) + "/rendered", "image/png")
    assert status == 200 and Image.open(io.BytesIO(body)).format == "PNG"
    study_url = url.rsplit("/series/", 1)[0]
    status, headers, body = await get(study_url + "/thumbnail")
    assert status == 200 and max(Image.open(io.BytesIO(body)).size) <= 256
    assert (await get(url + "/rendered?viewport=0,0"))[0] == 400


async def test_etag_and_caching(loaded) -> None:
    url = url_of(loaded, CINE)
    status, headers, _ = await get(url + "/frames/2", RAW_ANY)
    etag = headers["ETag"]
    assert "immutable" in headers["Cache-Control"]
    status, headers, body = await get(url + "/frames/2", RAW_ANY, **{"If-None-Match": etag})
    assert status == 304 and body == b""
    for resource in ("", "/metadata"):
        status, headers, _ = await get(url + resource)
        status2, _, _ = await get(url + resource, **{"If-None-Match": headers["ETag"]})
        assert status2 == 304


async def test_bulk_data_alone_or_in_multipart_as_asked(loaded) -> None:
    url = url_of(loaded, CT)
    _, _, body = await get(url + "/metadata")
    (meta,) = json.loads(body)
    uris = {tag: e["BulkDataURI"] for tag, e in meta.items() if "BulkDataURI" in e}
    (private_tag,) = [t for t in uris if t != "7FE00010"]  # CT_small.dcm's 2068-byte private OB
    expected = pydicom.dcmread(CT)[int(private_tag, 16)].value

    status, headers, body = await get(uris[private_tag])  # no Accept: multipart (the default)
    assert status == 200 and headers["Content-Type"].startswith("multipart/related")
    assert parts(headers, body) == [("application/octet-stream", expected)]
    status, headers, body = await get(uris[private_tag], "application/octet-stream")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert body == expected
    status, headers, body = await get(uris[private_tag], "image/png")
    assert status == 406 and "octet-stream" in headers["Warning"]

    # Pixel Data of a one-frame instance: one part too, when asked for.
    status, headers, body = await get(uris["7FE00010"], "application/octet-stream")
    assert status == 200 and headers["Content-Type"].startswith("application/octet-stream")
    assert body == pydicom.dcmread(CT).PixelData
