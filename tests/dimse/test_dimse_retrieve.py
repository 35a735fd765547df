"""C-MOVE (to a dcmtk storescp) and C-GET (getscu): what comes back is byte for byte what was
stored whenever the peer takes the stored transfer syntax."""

from __future__ import annotations

from pathlib import Path

import pytest
from dimse_peers import (
    DimseHub,
    Sample,
    StoreSCP,
    content,
    dataset_sha,
    empty_folder,
    listing,
    retrieve_samples,
    run,
    store_with_storescu,
    syntax_of,
)
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

pytestmark = pytest.mark.peers


@pytest.fixture
async def stored(dimse_hub: DimseHub, tmp_path: Path) -> DimseHub:
    await store_with_storescu(dimse_hub.address, retrieve_samples(), tmp_path)
    return dimse_hub


async def _blob(hub: DimseHub, sample: Sample) -> Path:
    ds = dcmread(sample.path, stop_before_pixels=True)
    (ref,) = await hub.archive.instances(ds.StudyInstanceUID, sop_uid=sample.sop_uid)
    return hub.archive.store.path(ref.sha256)


def _by_uid(files: list[Path]) -> dict[str, Path]:
    return {dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}


async def test_move_whole_archive_byte_identical(
    stored: DimseHub, receiver: StoreSCP, tmp_path: Path
) -> None:
    samples = retrieve_samples()
    studies = sorted({dcmread(s.path, stop_before_pixels=True).StudyInstanceUID for s in samples})
    result = await run(
        "movescu", "-v", "-S", "-aem", receiver.ae, "-k", "QueryRetrieveLevel=STUDY",
        "-k", "StudyInstanceUID=" + "\\".join(studies), *stored.address,
    )  # fmt: skip
    assert "Final Move Response (Success)" in result.out, result
    received = _by_uid(receiver.files())
    assert set(received) == {s.sop_uid for s in samples}
    for sample in samples:
        blob = await _blob(stored, sample)
        assert syntax_of(received[sample.sop_uid]) == sample.syntax
        assert dataset_sha(received[sample.sop_uid]) == dataset_sha(blob), sample.path.name


async def test_move_patient_root_series_level(
    stored: DimseHub, receiver: StoreSCP, tmp_path: Path
) -> None:
    nm = [s for s in retrieve_samples() if s.path.name in ("JPEG-LL.dcm", "JPEG-lossy.dcm")]
    first = dcmread(nm[0].path, stop_before_pixels=True)
    result = await run(
        "movescu", "-v", "-P", "-aem", receiver.ae, "-k", "QueryRetrieveLevel=SERIES",
        "-k", f"PatientID={first.PatientID}", "-k", f"StudyInstanceUID={first.StudyInstanceUID}",
        "-k", f"SeriesInstanceUID={first.SeriesInstanceUID}", *stored.address,
    )  # fmt: skip
    assert "Final Move Response (Success)" in result.out, result
    received = _by_uid(receiver.files())
    assert set(received) == {s.sop_uid for s in nm}
    for sample in nm:
        blob = await _blob(stored, sample)
        assert dataset_sha(received[sample.sop_uid]) == dataset_sha(blob)


async def test_move_to_unknown_destination(stored: DimseHub, receiver: StoreSCP) -> None:
    result = await run(
        "movescu", "-v", "-S", "-aem", "NOBODY", "-k", "QueryRetrieveLevel=STUDY",
        "-k", "StudyInstanceUID=1.2.3", *stored.address,
    )  # fmt: skip
    assert "MoveDestinationUnknown" in result.out or "0xa801" in result.out.lower(), result
    assert receiver.files() == []


async def _get(hub: DimseHub, sample: Sample, out: Path, *prefer: str):
    ds = dcmread(sample.path, stop_before_pixels=True)
    empty_folder(out)
    result = await run(
        "getscu", "-v", "-S", *prefer, "+B", "-od", out, "-k", "QueryRetrieveLevel=IMAGE",
        "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
        "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}",
        "-k", f"SOPInstanceUID={sample.sop_uid}", *hub.address,
    )  # fmt: skip
    return result, listing(out)


@pytest.mark.parametrize(
    ("name", "prefer"),
    [
        ("CT_small.dcm", []),  # explicit VR little endian
        ("MR2_J2KR.dcm", ["+xv"]),  # JPEG 2000 lossless
        ("JPEG-LL.dcm", ["+xs"]),  # JPEG lossless SV1
        ("OBXXXX1A_rle.dcm", ["+xr"]),  # RLE
        ("emri_small_jpeg_ls_lossless.dcm", ["+xt"]),  # JPEG-LS lossless
        ("image_dfl.dcm", ["+xd"]),  # deflated explicit VR little endian
    ],
)
async def test_get_keeps_stored_bytes(
    stored: DimseHub, tmp_path: Path, name: str, prefer: list[str]
) -> None:
    sample = next(s for s in retrieve_samples() if s.path.name == name)
    result, files = await _get(stored, sample, tmp_path / "got", *prefer)
    assert "Final Get Response (Success)" in result.out or len(files) == 1, result
    assert len(files) == 1, result
    assert syntax_of(files[0]) == sample.syntax
    assert dataset_sha(files[0]) == dataset_sha(await _blob(stored, sample))


async def test_get_uncompressed_falls_back_to_accepted_syntax(
    stored: DimseHub, tmp_path: Path
) -> None:
    sample = next(s for s in retrieve_samples() if s.syntax == ImplicitVRLittleEndian)
    result, files = await _get(stored, sample, tmp_path / "got")  # getscu prefers explicit LE
    assert len(files) == 1, result
    assert syntax_of(files[0]) == ExplicitVRLittleEndian
    assert content(files[0]) == content(await _blob(stored, sample))


@pytest.mark.parametrize(
    ("name", "prefer"),
    [
        ("MR2_J2KR.dcm", []),  # the peer takes uncompressed only
        # The SCP picks uncompressed over lossy when a context offers both (see
        # hub.dimse.config), so a lossy object is not sent to a peer offering both.
        ("SC_rgb_jpeg_dcmtk.dcm", ["+xy"]),
    ],
)
async def test_get_compressed_without_context_fails_clearly(
    stored: DimseHub, tmp_path: Path, name: str, prefer: list[str], caplog
) -> None:
    sample = next(s for s in retrieve_samples() if s.path.name == name)
    result, files = await _get(stored, sample, tmp_path / "got", *prefer)
    assert files == []
    assert "Failed" in result.out or "Warning" in result.out, result
    assert "no presentation context: peer does not accept" in caplog.text
    assert (await run("echoscu", *stored.address)).rc == 0
