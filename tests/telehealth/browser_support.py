"""Headless Chromium for the telehealth page tests: the fake camera playing the real cine,
signed-in contexts, and polling page state (the pages' CSP forbids wait_for_function)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import av
from telehealth_support import cine_frames

from hub.security.accounts import issue_token
from hub.security.middleware import SESSION_COOKIE

CHROMIUM = "/usr/bin/chromium"
SCHEDULED_STEP = {
    "patient_name": "Kowalska^Zofia",
    "patient_id": "PAED-0042",
    "modality": "US",
    "age": "008M",
    "weight_kg": 7.9,
    "accession": "ACC-BROWSER-1",
    "requested_procedure_id": "RP-B1",
    "sps_id": "SPS-B1",
    "sps_description": "Infant hip ultrasound",
}
CONNECTED = "() => document.querySelector('#status').textContent === 'connected'"
# Every wait and action of the pages' contexts. Pointer, freeze and capture commands and their
# events cross the data channel: SCTP, whose lost packets (a loaded machine drops UDP datagrams
# its busy processes do not read in time) are sent again after a timeout that starts at 3 s in
# aiortc and doubles up to 60 s. One round trip can so outlast Playwright's default of 30 s.
PAGE_TIMEOUT_MS = 120_000


def chromium_args(camera: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        # Host candidates on 127.0.0.1, the only interface here (a TURN server on loopback
        # needs no flag: Chromium reaches it without enumerating the loopback network).
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
    ]


def write_y4m(path: Path) -> Path:
    """The cine as a YUV4MPEG2 file, Chromium's fake-camera input."""
    with av.open(str(path), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for rgb in cine_frames():
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


async def logged_in(browser, hub, role: str):
    user = f"{role}-user"  # created by running_hub
    _, secret = await issue_token(hub.archive.engine, user, kind="session", ttl_seconds=3600)
    context = await browser.new_context(permissions=["camera", "microphone"])
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    await context.add_cookies([{"name": SESSION_COOKIE, "value": secret, "url": hub.url}])
    return context


def watch(page, problems: list[str]) -> None:
    page.on("pageerror", lambda error: problems.append(f"{page.url}: {error}"))
    page.on(
        "console",
        lambda m: problems.append(f"{page.url}: {m.text}") if m.type == "error" else None,
    )


async def print_page_logs(browser) -> None:
    """Each open page's session log (commands refused, connection states), printed for pytest
    to show beside a failure."""
    for context in browser.contexts:
        for page in context.pages:
            with contextlib.suppress(Exception):  # a page that cannot answer has no log to give
                print(f"{page.url} log:\n{await page.inner_text('#log', timeout=5000)}")


async def until(page, function: str, limit: float = PAGE_TIMEOUT_MS / 1000) -> None:
    """Poll a page function until it is true (wait_for_function would eval under the CSP)."""
    for _ in range(int(limit / 0.2)):
        if await page.evaluate(function):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not true after {limit} s: {function}")
