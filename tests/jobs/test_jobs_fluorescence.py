"""Fluorescence slides through the upload job: a multiplex QPTIFF lands as one optical path per
channel; bad channel input ends the job with its reason and leaves the archive empty."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from fluorescence_fixtures import corrupt_tile, write_ome, write_qptiff
from test_jobs_uploads import complete, follow_events, start_client, upload

import hub.jobs
from hub.app_keys import ARCHIVE_KEY
from hub.archive.query import Query


@pytest.fixture
async def client(tmp_path):
    client = await start_client(tmp_path / "hub")
    yield client
    await client.close()


async def _run_job(client, path) -> dict:
    created = await upload(client, path)
    job = await complete(client, created["id"])
    assert job["kind"] == "convert"
    return (await follow_events(client, job["id"]))[-1]


async def test_multiplex_qptiff_is_stored_channel_by_channel(client, tmp_path):
    source = write_qptiff(tmp_path / "multiplex.qptiff", channels=3)
    final = await _run_job(client, source.path)
    assert final["status"] == "done", final
    archive = client.app[ARCHIVE_KEY]
    refs = await archive.instances(final["study_uid"])
    # Each level's three channels, and the label and overview photographs of the glass.
    assert len(refs) == final["instances"] == 3 * len(source.planes) + 2
    found = await archive.search(Query(level="INSTANCE", keys={}, include={"00080008"}))
    kinds = sorted(row["00080008"]["Value"][2] for row in found)
    assert kinds == ["LABEL", "OVERVIEW", *["VOLUME"] * 3 * len(source.planes)]


async def test_channels_are_ingested_a_level_at_a_time_smallest_first(client, tmp_path):
    """The viewer can open a fluorescence slide while level 0 converts: the smaller levels, all
    channels of each, are in the archive while the job still runs."""
    runner = client.app[hub.jobs.JOBS_KEY]
    order: list[str] = []
    seen_while_held: list[dict] = []

    async def gate(job: dict, path) -> None:
        order.append(path.name)
        if path.name == "level0-c0.dcm":  # the smaller levels are stored: look from outside
            polled = await (await client.get(f"/api/jobs/{job['id']}")).json()
            seen_while_held.append(polled)

    runner.before_ingest = gate
    source = write_ome(tmp_path / "pyramid.ome.tif", channels=3, size=(2200, 1700), levels=3)
    final = await _run_job(client, source.path)
    assert final["status"] == "done", final
    assert order == [f"level{lv}-c{c}.dcm" for lv in (2, 1, 0) for c in range(3)]
    [held] = seen_while_held
    assert held["instances"] == 6 and not held["finished"] and held["study_uid"]
    refs = await client.app[ARCHIVE_KEY].instances(final["study_uid"])
    assert len(refs) == final["instances"] == 9


async def test_an_assumed_pixel_spacing_is_a_warning_of_the_job(client, tmp_path):
    source = write_ome(tmp_path / "no-spacing.ome.tif", channels=3, levels=1, physical_size=None)
    final = await _run_job(client, source.path)
    assert final["status"] == "done", final
    assert any("Pixel spacing not recorded" in w for w in final["warnings"]), final["warnings"]
    stored = await client.get(f"/api/jobs/{final['id']}")
    assert (await stored.json())["warnings"] == final["warnings"]


async def test_a_slide_with_its_spacing_has_no_warnings(client, tmp_path):
    source = write_ome(tmp_path / "spaced.ome.tif", channels=3, levels=1)
    final = await _run_job(client, source.path)
    assert final["status"] == "done" and final["warnings"] == [], final


def _corrupt(tmp_path):
    source = write_ome(tmp_path / "corrupt.ome.tif", channels=3, dtype=np.uint16, levels=1)
    with tifffile.TiffFile(source.path) as tif:
        page = tif.series[0].pages[2].index
    corrupt_tile(source.path, page)
    return source.path


def _mismatched(tmp_path):
    return write_qptiff(tmp_path / "mismatched.qptiff", shrink_channel=2).path


def _float64(tmp_path):
    path = tmp_path / "float.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 256, 256)), tile=(128, 128), metadata={"axes": "CYX"})
    return path


@pytest.mark.parametrize(
    "make, reason",
    [
        (_corrupt, "corrupt.ome.tif: cannot decode channel 'Cy3' for the 600x700 level"),
        (_mismatched, "mismatched.qptiff: mismatched channel sizes: channel 'Cy3' is 256x320"),
        (_float64, "float.ome.tif: unsupported sample format float64 (64-bit floating point)"),
    ],
    ids=["corrupt-channel-page", "mismatched-channel-sizes", "float64-samples"],
)
async def test_bad_channel_input_fails_the_job_and_stores_nothing(client, tmp_path, make, reason):
    final = await _run_job(client, make(tmp_path))
    assert final["status"] == "failed"
    assert final["error"].startswith(f"conversion failed: {reason}"), final["error"]
    assert final["instances"] == 0 and final["study_uid"] is None
    archive = client.app[ARCHIVE_KEY]
    assert await archive.search(Query(level="STUDY", keys={})) == []
    assert await archive.search(Query(level="INSTANCE", keys={})) == []
