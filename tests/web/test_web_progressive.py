"""A slide can be read while it converts: the upload's instances are ingested as the conversion
writes them, smallest first, and the viewer paints the levels already in, then refines. A
conversion that fails part-way leaves the study shown as incomplete, with the job's error."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import numpy as np
import pytest
from slide_faults import NDPI, ndpi_with_broken_level0
from web_support import Console, chromium, new_page

from hub.jobs import JOBS_KEY

pytestmark = pytest.mark.browser

# Smallest first: overview, then OpenSlide's levels 6, 5, 4, then the stored levels 3 .. 0.
ORDER = ["overview.dcm", *(f"level{i}.dcm" for i in range(6, -1, -1))]
LET_THROUGH = 3  # the overview and the two smallest levels; the rest wait at the gate
WAIT_SECONDS = 240


class IngestGate:
    """The runner's before_ingest hook: lets the first instances through, holds the others until
    released. The conversion itself runs on in its worker process meanwhile."""

    def __init__(self, let_through: int) -> None:
        self.let_through = let_through
        self.seen: list[str] = []
        self.released = asyncio.Event()

    async def __call__(self, job: dict, path: Path) -> None:
        self.seen.append(path.name)
        if len(self.seen) > self.let_through:
            await self.released.wait()


async def _upload(hub, path: Path) -> dict:
    data = await asyncio.to_thread(path.read_bytes)
    async with hub.session() as session:
        async with session.post(
            hub.url + "/api/uploads", json={"filename": path.name, "size": len(data)}
        ) as r:
            assert r.status == 201, await r.text()
            created = await r.json()
        async with session.put(f"{hub.url}/api/uploads/{created['id']}?offset=0", data=data) as r:
            assert r.status == 200, await r.text()
        async with session.post(f"{hub.url}/api/uploads/{created['id']}/complete") as r:
            assert r.status == 202, await r.text()
            return (await r.json())["job"]


async def _job(hub, job_id: str) -> dict:
    async with hub.session() as session, session.get(f"{hub.url}/api/jobs/{job_id}") as r:
        assert r.status == 200
        return await r.json()


async def _until(hub, job_id: str, condition) -> dict:
    async def poll() -> dict:
        while not condition(job := await _job(hub, job_id)):
            await asyncio.sleep(0.1)
        return job

    return await asyncio.wait_for(poll(), WAIT_SECONDS)


async def _view_while_held(hub_server, browser, path: Path, let_through: int) -> tuple:
    """Upload a slide, hold its ingest after ``let_through`` instances and open the viewer on
    what is stored: (gate, job, page, console, the job at the first painted view, that view)."""
    gate = IngestGate(let_through)
    hub_server.app[JOBS_KEY].before_ingest = gate
    job = await _upload(hub_server, path)
    held = await _until(hub_server, job["id"], lambda j: j["instances"] == let_through)
    assert held["study_uid"] and not held["finished"]
    page = await new_page(browser, hub_server)
    console = Console(page)
    await page.goto(f"{hub_server.url}/viewer/{held['study_uid']}")
    await page.evaluate("() => window.tesseraViewer.ready")
    # The state of the job at the moment of the first painted view: still held at the gate.
    at_paint = await _job(hub_server, job["id"])
    first = await page.evaluate("() => window.tesseraViewer.firstPaint")
    return gate, job, page, console, at_paint, first


async def _painted_fraction(page) -> float:
    """Share of the slide canvas that is not the empty viewer (the DAPI slide is dark, its
    nuclei blue; the empty canvas is transparent over the page's light background)."""
    import io

    from PIL import Image

    shot = await page.locator("#osd").screenshot()
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=np.int16)
    return float((pixels.sum(axis=2) < 300).mean())


async def test_viewer_paints_before_the_job_finishes_and_refines(hub_server, corpus):
    async with chromium() as browser:
        held = await _view_while_held(hub_server, browser, corpus / NDPI, LET_THROUGH)
        gate, job, page, console, at_paint, first = held
        assert not at_paint["finished"] and at_paint["status"] in ("running", "ingesting")
        assert at_paint["instances"] == LET_THROUGH
        assert first is not None and first["levels"] == LET_THROUGH - 1  # levels 6 and 5
        assert first["width"] == 124
        assert await _painted_fraction(page) > 0.5
        assert await page.locator("#conversion").is_visible()

        gate.released.set()
        done = await _until(hub_server, job["id"], lambda j: j["finished"])
        assert done["status"] == "done", done
        assert done["instances"] == len(ORDER)
        assert gate.seen == ORDER  # smallest first, level 0 last

        await page.wait_for_function("() => document.body.dataset.levels === '7'", timeout=60_000)
        await page.evaluate("() => window.tesseraViewer.converted")
        refined = await page.evaluate(
            """() => { const v = window.tesseraViewer;
                       const s = v.state.slides[v.state.current];
                       return { width: s.width, levels: s.levels.length, times: v.refinements }; }"""
        )
        assert refined["width"] == 3968 and refined["levels"] == 7 and refined["times"] >= 1
        assert await page.locator("#conversion").is_hidden()
        assert await _painted_fraction(page) > 0.5
        assert console.errors == []


async def _stored_pyramid(hub_server, refs) -> tuple[int, int]:
    """(levels, width of the finest) of the pyramid levels stored, which the viewer must show."""
    widths = []
    for ref in refs:
        header = json.loads(await hub_server.archive.metadata_json(ref))
        if "VOLUME" in header["00080008"]["Value"]:
            widths.append(header["00480006"]["Value"][0])
    return len(widths), max(widths)


async def test_a_conversion_failing_part_way_leaves_the_study_shown_incomplete(
    hub_server, corpus, tmp_path
):
    """Level 0's stripes are zeroed in a copy of the NDPI: everything smaller converts (and is
    stored, smallest first), then re-tiling level 0 fails."""
    broken = ndpi_with_broken_level0(corpus, tmp_path / "broken.ndpi")

    job = await _upload(hub_server, broken)
    failed = await _until(hub_server, job["id"], lambda j: j["finished"])
    assert failed["status"] == "failed"
    assert failed["error"].startswith("conversion failed: ")
    assert "3968x4864" in failed["error"]
    # The smaller levels are converted beside level 0: how many were done when it failed
    # depends on scheduling. The error must give the number actually stored, never level 0.
    said = re.search(r"the study is incomplete: (\d+) instances were stored$", failed["error"])
    assert said, failed["error"]
    stored = int(said.group(1))
    assert 1 <= stored <= len(ORDER) - 1
    assert failed["instances"] == stored
    refs = await hub_server.archive.instances(failed["study_uid"])
    assert len(refs) == stored

    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        await page.goto(f"{hub_server.url}/viewer/{failed['study_uid']}")
        await page.evaluate("() => window.tesseraViewer.ready")
        error = page.locator("#error")
        assert await error.is_visible()
        assert (await error.text_content()).startswith(
            "This slide is incomplete: conversion failed"
        )
        assert await page.evaluate("() => document.body.dataset.incomplete") == "true"
        first = await page.evaluate("() => window.tesseraViewer.firstPaint")
        assert (first["levels"], first["width"]) == await _stored_pyramid(hub_server, refs)
        assert await _painted_fraction(page) > 0.5


async def test_a_fluorescence_slide_opens_with_all_its_channels_and_keeps_them_refined(
    hub_server, tmp_path
):
    """The channels of a level are stored together, smallest levels first: the viewer opens on
    the two smaller levels with every channel, and a channel hidden meanwhile stays hidden when
    level 0 arrives."""
    from fluorescence_fixtures import write_ome

    source = write_ome(tmp_path / "pyramid.ome.tif", channels=3, size=(2200, 1700), levels=3)
    async with chromium() as browser:
        # Levels 2 and 1, three channels each.
        held = await _view_while_held(hub_server, browser, source.path, 6)
        gate, job, page, console, at_paint, first = held
        assert not at_paint["finished"] and at_paint["instances"] == 6
        assert (first["levels"], first["width"]) == (2, 850)
        channels = await page.evaluate("() => window.tesseraViewer.state.slides[0].channels")
        assert len(channels) == 3
        await page.locator('#channel-list input[type="checkbox"][data-channel="1"]').uncheck()
        await page.wait_for_function("() => location.hash.includes('channels=101')")

        gate.released.set()
        done = await _until(hub_server, job["id"], lambda j: j["finished"])
        assert done["status"] == "done", done
        assert gate.seen == [f"level{lv}-c{c}.dcm" for lv in (2, 1, 0) for c in range(3)]
        await page.wait_for_function("() => document.body.dataset.levels === '3'", timeout=60_000)
        refined = await page.evaluate(
            """() => { const v = window.tesseraViewer;
                       const s = v.state.slides[v.state.current];
                       return { width: s.width, visible: s.channels.map((c) => c.visible) }; }"""
        )
        assert refined == {"width": 1700, "visible": [True, False, True]}
        box = page.locator('#channel-list input[type="checkbox"][data-channel="1"]')
        assert await box.is_checked() is False
        assert console.errors == []
