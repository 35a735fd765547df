"""Round trip through an independent client: STOW-RS, QIDO-RS and WADO-RS with dicomweb-client."""

from __future__ import annotations

import asyncio
import hashlib
import time
import warnings
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_support import readable_files, rounds
from hubtest import free_port, running_hub
from pydicom.encaps import generate_frames

from hub.config import Settings

# Files pydicom reads that an archive must refuse, and why.
REFUSED = {
    "MR_truncated.dcm": "Pixel Data is truncated",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated",
    "bad_sequence.dcm": "Invalid SOPInstanceUID",
    "meta_missing_tsyntax.dcm": "TransferSyntaxUID",
}
IDENTITY = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
ANY_TS = (("application/dicom", "*"),)
ACCEPT_ANY_TS = 'multipart/related; type="application/dicom"; transfer-syntax=*'
RAW_FRAMES = (("application/octet-stream", "*"),)
# The hub's answers to a body that arrives too slowly and to a store too busy: send it again.
SEND_AGAIN = {408, 503}
SENDS = 3


def _has_identity(path: Path) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    return all(ds.get(k) for k in IDENTITY)


def expected_frames(path: Path) -> list[bytes]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
    count = int(ds.get("NumberOfFrames") or 1)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return list(generate_frames(ds.PixelData, number_of_frames=count))
    size = len(ds.PixelData) // count
    return [ds.PixelData[i * size : (i + 1) * size] for i in range(count)]


def exchange(url: str, headers: dict[str, str], files: list[Path]) -> dict[str, object]:
    """Everything the client does in one round (blocking: run in a thread)."""
    client = DICOMwebClient(url=url, headers=headers)
    # Its own retry would send again a chunked body it has consumed already (the hub then
    # answers 400 to an empty body): the STOW below sends again itself.
    client.set_http_retry_params(retry=False)
    sent = {p: p.read_bytes() for p in files}
    reply = stow(client, f"{url}/studies", list(sent.values()))
    stored = {str(item.ReferencedSOPInstanceUID) for item in reply.get("ReferencedSOPSequence", [])}
    failed = [int(item.FailureReason) for item in reply.get("FailedSOPSequence", [])]
    found = client.search_for_instances()
    retrieved: dict[str, bytes] = {}
    frames: dict[str, list[bytes]] = {}
    for row in found:
        ds = pydicom.Dataset.from_json(row)
        study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        instance_url = f"{url}/studies/{study}/series/{series}/instances/{sop}"
        # The client's own HTTP and multipart decoding, without its re-parse into a Dataset,
        # so that the bytes can be compared.
        reply = client._http_get(instance_url, headers={"Accept": ACCEPT_ANY_TS})
        (raw,) = client._decode_multipart_message(reply, stream=False)
        retrieved[sop] = raw
        count = int(ds.get("NumberOfFrames") or 1)
        if count > 1:
            frames[sop] = client.retrieve_instance_frames(
                study, series, sop, list(range(1, count + 1)), media_types=RAW_FRAMES
            )
    return {
        "stored": stored,
        "failed": failed,
        "retrieved": retrieved,
        "frames": frames,
        "sent": sent,
    }


def stow(client: DICOMwebClient, url: str, bodies: list[bytes]) -> pydicom.Dataset:
    for _ in range(SENDS - 1):
        try:
            return client._http_post_multipart_application_dicom(url, bodies)
        except requests.HTTPError as e:
            if e.response is None or e.response.status_code not in SEND_AGAIN:
                raise
            time.sleep(float(e.response.headers.get("Retry-After", "1")))
    return client._http_post_multipart_application_dicom(url, bodies)


@pytest.mark.timeout(900)
async def test_round_trip_every_readable_file(
    corpus: Path, tmp_path: Path, store_on_s3: dict[str, str]
) -> None:
    files = readable_files(corpus)
    assert len(files) > 200
    checked_frames = 0
    stored_total = 0
    for number, group in enumerate(rounds(files)):
        settings = Settings(data_dir=tmp_path / f"round{number}", port=free_port(), **store_on_s3)
        async with running_hub(settings) as hub:
            result = await asyncio.to_thread(
                exchange, hub.url + "/dicomweb", hub.admin_headers, group
            )
        sent: dict[Path, bytes] = result["sent"]  # type: ignore[assignment]
        retrieved: dict[str, bytes] = result["retrieved"]  # type: ignore[assignment]
        for path, data in sent.items():
            must_store = path.name not in REFUSED and _has_identity(path)
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).get("SOPInstanceUID", ""))
            if not must_store:
                assert uid not in retrieved, f"{path.name} should have been refused"
                continue
            assert uid in result["stored"], f"{path.name} was not stored"
            digest = hashlib.sha256(retrieved[uid]).hexdigest()
            assert digest == hashlib.sha256(data).hexdigest(), f"{path.name} changed"
            stored_total += 1
            if uid in result["frames"]:
                assert result["frames"][uid] == expected_frames(path), f"{path.name} frames"
                checked_frames += 1
        assert len(retrieved) == len(result["stored"])
    assert stored_total > 120
    assert checked_frames > 10


async def test_public_store_and_retrieve(corpus: Path, hub_server) -> None:
    """The client's own store/retrieve calls, on the corpus slide and ultrasound files."""
    paths = sorted((corpus / "dicom-wsi").glob("*.dcm")) + [corpus / "us" / "US-RGB-8-epicard.dcm"]
    datasets = [pydicom.dcmread(p) for p in paths if p.name != "sm_image_jpegls.dcm"]

    def run() -> list[pydicom.Dataset]:
        client = DICOMwebClient(url=hub_server.url + "/dicomweb", headers=hub_server.admin_headers)
        reply = client.store_instances(datasets)
        assert len(reply.ReferencedSOPSequence) == len(datasets)
        studies = client.search_for_studies(search_filters={"ModalitiesInStudy": "SM"})
        assert studies
        return [
            client.retrieve_instance(
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, media_types=ANY_TS
            )
            for ds in datasets
        ]

    back = await asyncio.to_thread(run)
    for original, copy in zip(datasets, back, strict=True):
        assert copy.SOPInstanceUID == original.SOPInstanceUID
        assert copy.PixelData == original.PixelData
