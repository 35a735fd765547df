"""End-to-end: study browser, upload with progress, ultrasound cine, in headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import pixel_array
from web_support import Console, chromium, ingest_all, new_page

from hub.worklist import model as worklist

pytestmark = pytest.mark.browser

# Keeps every server-sent event the page receives in sessionStorage, which outlives the
# navigation from the upload page to the viewer.
RECORD_EVENTS = """
(() => {
  const Original = window.EventSource;
  window.EventSource = class extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener("progress", (e) => {
        const log = JSON.parse(sessionStorage.getItem("job-events") || "[]");
        log.push(JSON.parse(e.data));
        sessionStorage.setItem("job-events", JSON.stringify(log));
      });
    }
  };
})();
"""


async def test_upload_shows_progress_then_opens_viewer(hub_server, corpus):
    svs = corpus / "wsi" / "CMU-1-Small-Region.svs"
    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        console = Console(page)
        await page.add_init_script(RECORD_EVENTS)
        await page.goto(f"{hub_server.url}/upload")
        await page.fill("input[name=patient_id]", "P-UPLOAD")
        await page.fill("input[name=patient_name]", "Upload^Browser")
        await page.fill("input[name=accession]", "ACC-UPLOAD")
        await page.set_input_files("#files", svs)
        await page.wait_for_function(
            "() => document.querySelector('progress.upload')?.value === 100", timeout=60_000
        )
        await page.wait_for_url("**/viewer/**", timeout=120_000)
        await page.evaluate("() => window.tesseraViewer.ready")
        events = await page.evaluate("() => JSON.parse(sessionStorage.getItem('job-events'))")
        metadata = await page.inner_text("#metadata")
        assert console.errors == []

    final = events[-1]
    assert final["status"] == "done" and final["percent"] == 100.0
    assert final["kind"] == "convert" and final["instances"] >= 2
    assert page.url.endswith(f"/viewer/{final['study_uid']}") or final["study_uid"] in page.url
    percents = [e["percent"] for e in events]
    assert percents == sorted(percents)
    assert "P-UPLOAD" in metadata and "ACC-UPLOAD" in metadata
    refs = await hub_server.archive.instances(final["study_uid"])
    assert {r.patient_id for r in refs} == {"P-UPLOAD"}


async def test_study_browser_searches_and_counts_slides(hub_server, corpus, tmp_path):
    from wsi import ConvertOptions, SlideIds, convert_slide

    out = tmp_path / "converted"
    out.mkdir()
    ids = SlideIds(patient_id="P-BROWSE", patient_name="Browse^Slide", accession="ACC-SM")
    paths = await asyncio.to_thread(
        convert_slide, corpus / "wsi" / "CMU-1-Small-Region.svs", out, ids, ConvertOptions()
    )
    slide_study = await ingest_all(hub_server.archive, paths)
    us_study = await ingest_all(
        hub_server.archive, [Path(get_testdata_file("color3d_jpeg_baseline.dcm"))]
    )
    ct_study = await ingest_all(hub_server.archive, [Path(get_testdata_file("CT_small.dcm"))])

    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        console = Console(page)
        # Pages of two: the third study comes with "More studies".
        await page.goto(f"{hub_server.url}/studies?limit=2")
        await page.wait_for_function("() => document.querySelectorAll('li.study').length === 2")
        await page.click("#more")
        await page.wait_for_function("() => document.querySelectorAll('li.study').length === 3")
        assert await page.locator("#more").is_hidden()
        shown = await page.locator("li.study").evaluate_all(
            "rows => rows.map(r => r.dataset.study)"
        )
        assert set(shown) == {slide_study, us_study, ct_study}
        await page.goto(f"{hub_server.url}/studies")
        await page.wait_for_selector(f"li.study[data-study='{ct_study}']")
        assert await page.locator("li.study").count() == 3

        # Patient name, part of a word, any case.
        await page.fill("input[name=PatientName]", "browse")
        await page.click("button[type=submit]")
        await page.wait_for_function("() => document.querySelectorAll('li.study').length === 1")
        row = page.locator(f"li.study[data-study='{slide_study}']")
        await row.locator(".slides", has_text="1 slide").wait_for()
        thumb_width = await row.locator("img").evaluate(
            "img => img.decode().then(() => img.naturalWidth)"
        )
        assert thumb_width > 0
        assert await row.locator("a.title").get_attribute("href") == f"/viewer/{slide_study}"

        # Modality.
        await page.click("button[type=reset]")
        await page.select_option("select[name=ModalitiesInStudy]", "US")
        await page.click("button[type=submit]")
        await page.wait_for_selector(f"li.study[data-study='{us_study}']")
        assert await page.locator("li.study").count() == 1
        href = await page.locator("li.study a.title").get_attribute("href")
        assert href == f"/ultrasound/{us_study}"

        # Date range that holds only the ultrasound (2016-05-03).
        await page.goto(f"{hub_server.url}/studies?from=2016-01-01&to=2016-12-31")
        await page.wait_for_selector(f"li.study[data-study='{us_study}']")
        assert await page.locator("li.study").count() == 1

        # Accession, then the patient's other studies through the patient link.
        await page.goto(f"{hub_server.url}/studies?AccessionNumber=ACC-SM")
        await page.wait_for_selector(f"li.study[data-study='{slide_study}']")
        await page.click(f"li.study[data-study='{slide_study}'] a.patient")
        await page.wait_for_url("**/studies?PatientID=P-BROWSE")
        await page.wait_for_selector(f"li.study[data-study='{slide_study}']")
        assert await page.locator("li.study").count() == 1
        assert console.errors == []


async def test_ultrasound_cine_plays_frames_at_recorded_rate(hub_server):
    path = Path(get_testdata_file("color3d_jpeg_baseline.dcm"))
    study = await ingest_all(hub_server.archive, [path])
    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        console = Console(page)
        await page.goto(f"{hub_server.url}/ultrasound/{study}")
        await page.wait_for_function("() => window.tesseraCine.ready", timeout=60_000)
        assert await page.evaluate("() => window.tesseraCine.frames.length") == 120
        assert float(await page.input_value("#fps")) == pytest.approx(1000 / 33.333, abs=0.1)
        first_index = await page.evaluate("() => window.tesseraCine.index")
        await page.wait_for_function(  # it plays: the frame shown moves on
            f"() => window.tesseraCine.index !== {first_index}", timeout=60_000
        )

        # Pause on frame 10 with the slider; the canvas shows that frame.
        await page.locator("#frame").fill("10")
        assert await page.inner_text("#frame-text") == "10 / 120"
        data_url = await page.evaluate("() => document.getElementById('screen').toDataURL()")
        shown = np.asarray(
            Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"),
            dtype=np.int16,
        )
        assert console.errors == []

    # pydicom converts the YBR_FULL_422 JPEG frame to RGB, as the browser does.
    frame = await asyncio.to_thread(pixel_array, path, index=9)
    expected = np.asarray(frame, dtype=np.int16)
    assert shown.shape == expected.shape
    assert np.abs(shown - expected).mean() < 3


async def test_upload_from_a_worklist_item_and_of_dicom_files(hub_server, corpus):
    item = await worklist.create(
        hub_server.archive.engine,
        worklist.NewItem(
            patient_name="Order^Slide", patient_id="P-ORDER", modality="SM", accession="ACC-ORD"
        ),
    )
    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        console = Console(page)
        await page.goto(f"{hub_server.url}/upload")
        await page.wait_for_selector(
            f"select[name=worklist_item] option[value='{item.id}']", state="attached"
        )
        await page.select_option("select[name=worklist_item]", str(item.id))
        assert await page.locator("input[name=patient_id]").is_disabled()
        await page.set_input_files("#files", corpus / "wsi" / "small.svs")
        await page.wait_for_url(f"**/viewer/{item.study_uid}", timeout=120_000)
        await page.evaluate("() => window.tesseraViewer.ready")
        metadata = await page.inner_text("#metadata")
        assert "P-ORDER" in metadata and "ACC-ORD" in metadata

        # DICOM files are stored as they are; an ultrasound opens in the cine viewer.
        await page.goto(f"{hub_server.url}/upload")
        await page.set_input_files("#files", get_testdata_file("color3d_jpeg_baseline.dcm"))
        await page.wait_for_url("**/ultrasound/**", timeout=60_000)
        await page.wait_for_function("() => window.tesseraCine.ready", timeout=60_000)

        # A study without slides: the viewer says so instead of failing silently.
        us_study = page.url.rsplit("/", 1)[1]
        await page.goto(f"{hub_server.url}/viewer/{us_study}")
        await page.evaluate("() => window.tesseraViewer.ready")
        assert "no whole-slide images" in await page.inner_text("#error")
        assert console.errors == []


async def test_upload_resumes_after_a_page_reload_and_shows_a_failed_conversion(
    hub_server, tmp_path
):
    big = tmp_path / "not-a-slide.svs"
    await asyncio.to_thread(big.write_bytes, os.urandom(40 * 1024 * 1024))
    puts: list[str] = []

    async def lose_later_chunks(route) -> None:
        # The connection fails after the first chunk: the page keeps retrying until reloaded.
        if route.request.method == "PUT" and "offset=0" not in route.request.url:
            await route.abort()
        else:
            await route.continue_()

    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        page.on("request", lambda r: r.method == "PUT" and puts.append(r.url))
        await page.route("**/api/uploads/**", lose_later_chunks)
        await page.goto(f"{hub_server.url}/upload")
        await page.set_input_files("#files", big)
        await page.wait_for_function(
            "() => document.querySelector('progress.upload')?.value >= 20", timeout=60_000
        )
        await page.reload()
        await page.unroute("**/api/uploads/**")
        console = Console(page)
        upload_id = await page.evaluate(
            "() => Object.entries(localStorage).find(([k]) => k.includes('not-a-slide.svs'))[1]"
        )
        status = await (await page.request.get(f"{hub_server.url}/api/uploads/{upload_id}")).json()
        assert status["received"] == status["chunk_size"] < status["size"]

        # The same file again: it carries on from the server's count, then the job fails.
        await page.set_input_files("#files", big)
        await page.wait_for_selector(".transfer[data-status='failed']", timeout=60_000)
        assert "conversion failed" in await page.inner_text("#error")
        offsets = [int(url.rsplit("offset=", 1)[1]) for url in puts]
        assert offsets.count(0) == 1, offsets
        assert status["received"] in offsets
        assert console.errors == []


async def test_pages_log_no_refusals_for_a_pathologist(hub_server):
    """A role that may not read the worklist still gets clean pages: nothing is asked for
    that would be refused."""
    from hub.security.accounts import create_user, issue_token

    await create_user(hub_server.archive.engine, "path1", "pathologist", None)
    _, secret = await issue_token(hub_server.archive.engine, "path1")
    async with chromium() as browser:
        context = await browser.new_context()
        await context.set_extra_http_headers({"Authorization": f"Bearer {secret}"})
        page = await context.new_page()
        console = Console(page)
        for path in ("/studies", "/upload"):
            await page.goto(hub_server.url + path)
            await page.wait_for_load_state("networkidle")
        assert await page.locator("select[name=worklist_item]").is_hidden()
        assert console.errors == []
