"""Stills recorded at the clinic from the device's own video, before network encoding: the
clinic page sends the native frame as PNG, and the hub stores it losslessly as an Ultrasound
Image with the session's worklist attributes, through the archive's ingest path."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from browser_support import (
    CHROMIUM,
    CONNECTED,
    chromium_args,
    logged_in,
    until,
    watch,
    write_y4m,
)
from hubtest import dciodvfy_errors
from PIL import Image
from telehealth_support import (
    cine_frames,
    psnr,
    running_hub,
    start_session,
    stored_dataset,
)

from hub.archive.query import Query
from telehealth.routes import REGISTRY_KEY


def png(rgb: np.ndarray, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


async def _post(
    http, hub, session, body: bytes, role: str = "clinic", capture: str = "", **headers
) -> tuple:
    url = f"{hub.url}/api/telehealth/sessions/{session['id']}/captures/source"
    if capture:
        url += f"?capture={capture}"
    token = session["clinic_token"] if role == "clinic" else session["specialist_token"]
    sent = {
        **hub.headers[role],
        "X-Telehealth-Token": token,
        "Content-Type": "image/png",
        **headers,
    }
    async with http.post(url, data=body, headers=sent) as r:
        return r.status, await r.json()


async def test_a_device_still_is_stored_pixel_for_pixel(tmp_path: Path) -> None:
    frame = cine_frames()[17]
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session = await start_session(http, hub)
        # As a canvas writes it: RGBA, opaque.
        status, event = await _post(http, hub, session, png(frame, "RGBA"))
        assert status == 201, event
        assert (event["kind"], event["source"], event["state"]) == ("still", "device", "stored")
        assert hub.app[REGISTRY_KEY].get(session["id"]).captures == [event]
        # The page retries under its capture id until it has an answer: stored once.
        created, first = await _post(http, hub, session, png(frame), capture="a1b2c3d4e5")
        assert created == 201 and first["sop_instance_uid"] != event["sop_instance_uid"]
        repeated = await _post(http, hub, session, png(frame), capture="a1b2c3d4e5")
        assert repeated == (200, first)
        assert len(await hub.archive.search(Query(level="INSTANCE", keys={}))) == 2
        ds = await stored_dataset(hub.archive, event)
        path = tmp_path / "still.dcm"
        ds.save_as(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"  # RLE Lossless
    assert np.array_equal(ds.pixel_array, frame)
    assert ds.LossyImageCompression == "00"
    assert "DerivationDescription" not in ds
    assert ds.PatientID == "PAED-0042" and ds.AccessionNumber == "ACC-TH-0001"
    assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.1001"
    assert ds.RequestAttributesSequence[0].ScheduledProcedureStepID == "SPS-77-1"
    assert len(ds.SequenceOfUltrasoundRegions) == 1
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(path) == []


async def test_bad_device_stills_are_refused_with_a_reason(tmp_path: Path) -> None:
    frame = cine_frames()[0]
    translucent = np.dstack([frame, np.full(frame.shape[:2], 128, np.uint8)])
    jpeg = io.BytesIO()
    Image.fromarray(frame).save(jpeg, "JPEG")
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session = await start_session(http, hub)
        refusals = [
            (await _post(http, hub, session, b"not an image"), 400, "not an image"),
            (await _post(http, hub, session, jpeg.getvalue()), 400, "must be PNG"),
            (await _post(http, hub, session, png(frame)[:5000]), 400, "cannot be decoded"),
            (await _post(http, hub, session, png(frame[:8, :8])), 400, "outside 16..8192"),
            (await _post(http, hub, session, png(frame), capture="x/y"), 400, "capture must"),
            (await _post(http, hub, session, png(translucent, "RGBA")), 400, "transparent"),
            (
                await _post(http, hub, session, png(frame), **{"Content-Type": "image/jpeg"}),
                415,
                "image/png",
            ),
        ]
        for (status, body), expected, reason in refusals:
            assert status == expected and reason in body["detail"], body
        joined_url = f"{hub.url}/api/telehealth/join"
        headers = hub.headers["specialist"]
        async with http.post(
            joined_url, json={"code": session["invite_code"]}, headers=headers
        ) as r:
            joined = await r.json()
        status, body = await _post(http, hub, {**session, **joined}, png(frame), "specialist")
        assert status == 403 and "clinic's device" in body["detail"]
        assert hub.app[REGISTRY_KEY].get(session["id"]).captures == []
        assert await hub.archive.search(Query(level="INSTANCE", keys={})) == []


PENDING = "() => document.querySelector('#outbox').dataset.pending"


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
async def test_the_clinic_page_records_device_stills_and_delivers_each_once(
    tmp_path: Path,
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    camera = await asyncio.to_thread(write_y4m, tmp_path / "cine.y4m")
    async with (
        running_hub(tmp_path / "data") as hub,
        aiohttp.ClientSession() as http,
        playwright_api.async_playwright() as p,
    ):
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(camera))
        try:
            session = await start_session(http, hub)
            live = hub.app[REGISTRY_KEY].get(session["id"])
            page = await (await logged_in(browser, hub, "clinic")).new_page()
            problems: list[str] = []
            watch(page, problems)
            await page.add_init_script(
                f"sessionStorage.setItem('telehealth:{session['id']}', '{session['clinic_token']}')"
            )
            # The link to the hub is cut for the uploads: no request, or the answer lost on
            # the way back after the hub stored the still (injected faults: a real drop of
            # one request on loopback cannot be provoked).
            link = {"mode": "up"}
            capture_ids: list[str] = []

            async def uploads(route) -> None:
                capture_ids.append(route.request.url.split("capture=")[1])
                if link["mode"] == "down":
                    await route.abort("internetdisconnected")
                elif link["mode"] == "answer lost":
                    await route.fetch()
                    await route.abort("connectionreset")
                else:
                    await route.continue_()

            await page.route("**/captures/source?*", uploads)
            url = f"{hub.url}/telehealth/clinic?session={session['id']}"
            await page.goto(url)
            await until(page, CONNECTED)

            # 1. The link is down: the still waits, retried, through a reload of the page.
            link["mode"] = "down"
            await page.click("#source-still")
            await until(page, f"() => ({PENDING})() === '1'")
            await _true(lambda: len(capture_ids) >= 2)  # the page's own retry
            await page.reload()
            await until(page, CONNECTED)
            await until(page, f"() => ({PENDING})() === '1'")
            link["mode"] = "up"
            first = page.locator("[data-captures] li[data-source=device]")
            await first.wait_for(timeout=60000)
            await until(page, f"() => ({PENDING})() === '0'")

            # 2. The hub stores the still but its answer is lost: the retry gets that one.
            link["mode"] = "answer lost"
            await page.click("#source-still")
            await _true(lambda: len(live.captures) == 2)
            link["mode"] = "up"
            await until(page, "() => document.querySelectorAll('[data-captures] li').length === 2")
            await until(page, f"() => ({PENDING})() === '0'")

            ids = list(dict.fromkeys(capture_ids))
            assert len(ids) == 2 and len(capture_ids) > 3, capture_ids  # retried, same ids
            device = [c for c in live.captures if c.get("source") == "device"]
            assert len(device) == 2, live.captures  # each still once, not twice
            rows = await hub.archive.search(Query(level="INSTANCE", keys={}))
            assert len(rows) == 2
            ds = await stored_dataset(hub.archive, device[0])
            injected = ("net::ERR_INTERNET_DISCONNECTED", "net::ERR_CONNECTION_RESET")
            assert [m for m in problems if not m.endswith(injected)] == []
        finally:
            await browser.close()
    assert ds.LossyImageCompression == "00"
    stored = ds.pixel_array
    assert stored.shape == (480, 640, 3)  # the device's native size
    # The camera played the cine through YUV 4:2:0 (the fake device's input format); the still
    # is its frame at the moment of the click, compared with the cine frame it best matches.
    best = max(psnr(stored, source) for source in cine_frames())
    assert best >= 45.0


async def _true(condition, limit: float = 60.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.2)
