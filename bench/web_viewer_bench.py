"""Slide viewer benchmark: time to open a case and to show an adjacent field of view.

Runs the whole hub on 127.0.0.1, converts and ingests CMU-1-Small-Region.svs, then drives the
viewer page in headless Chromium (the same page users get):

  open        navigation start -> every tile of the first view painted, in a fresh browser
              context each time (cold HTTP cache), --opens times
  adjacent    at full resolution, pan by one whole field of view to a part of the slide not seen
              yet -> every tile of the new view painted, --pans times (serpentine):
              cold: frames fetched only when needed (prefetch off);
              prefetched: the user looked at each view for --settle-ms first, during which the
              viewer prefetched the neighbouring frames

Prints one JSON document (`--json OUT` also writes it). Targets: open < 2 s, adjacent < 150 ms
(practice reference: < 4 s and < 0.25 s).

    python -m bench.web_viewer_bench --opens 5 --pans 12 [--slide big.svs]

The default slide is the peers' 40000x30000 synthetic SVS when present (bench/../shared/peers
make_big_svs.py writes it to /tmp/peers/data), else CMU-1-Small-Region.svs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import web
from playwright.async_api import async_playwright

from hub.app import build_app
from hub.app_keys import ARCHIVE_KEY
from hub.archive import Source
from hub.config import Settings
from hub.security.accounts import create_user, issue_token
from wsi import ConvertOptions, SlideIds, convert_slide

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
BIG_SLIDE = Path("/tmp/peers/data/big-40000x30000.svs")
SMALL_SLIDE = CORPUS / "wsi" / "CMU-1-Small-Region.svs"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAN_JS = "([dx, dy]) => window.tesseraViewer.measureAdjacent(dx, dy)"
PREFETCH_JS = "(on) => { window.tesseraViewer.prefetch = on; }"
TO_FULL_RESOLUTION_JS = """() => {
    const v = window.tesseraViewer.state.viewer, vp = v.viewport;
    vp.zoomTo(vp.imageToViewportZoom(1), null, true);
    vp.panTo(vp.imageToViewportCoordinates(vp.getContainerSize().x / 2,
                                           vp.getContainerSize().y / 2), true);
    return window.tesseraViewer.measureAdjacent(0, 0);
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serpentine(pans: int, row: int = 6) -> list[tuple[int, int]]:
    """Right along a row, one down, left along the next: every view is new."""
    moves: list[tuple[int, int]] = []
    across = 1
    while len(moves) < pans:
        moves += [(across, 0)] * row + [(0, 1)]
        across = -across
    return moves[:pans]


async def run(slide: Path, opens: int, pans: int, settle_ms: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", port=free_port())
        app = await build_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.port).start()
        try:
            archive = app[ARCHIVE_KEY]
            out = Path(tmp) / "dcm"
            out.mkdir()
            paths = await asyncio.to_thread(
                convert_slide, slide, out, SlideIds(patient_id="BENCH"), ConvertOptions()
            )
            for path in paths:
                study = (await archive.ingest_file(path, source=Source(door="import"))).study_uid
            await create_user(archive.engine, "bench", "pathologist", None)
            _, secret = await issue_token(archive.engine, "bench", label="viewer bench")
            url = f"http://127.0.0.1:{settings.port}/viewer/{study}"
            headers = {"Authorization": f"Bearer {secret}"}
            figures = await drive(url, headers, opens, pans, settle_ms)
            return {"slide": slide.name, **figures}
        finally:
            await runner.cleanup()


async def drive(url: str, headers: dict, opens: int, pans: int, settle_ms: int) -> dict:
    open_ms: list[float] = []
    cold: list[float] = []
    prefetched: list[float] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for attempt in range(opens):
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            await context.set_extra_http_headers(headers)
            page = await context.new_page()
            await page.goto(url)
            await page.evaluate("() => window.tesseraViewer.ready")
            open_ms.append(await page.evaluate("() => window.tesseraViewer.openMs"))
            if attempt == opens - 1:
                await page.evaluate(PREFETCH_JS, False)
                await page.evaluate(TO_FULL_RESOLUTION_JS)
                moves = serpentine(2 * pans)
                for move in moves[:pans]:
                    cold.append(await page.evaluate(PAN_JS, list(move)))
                await page.evaluate(PREFETCH_JS, True)
                for move in moves[pans:]:
                    await page.evaluate(PAN_JS, [0, 0])  # settle: starts the prefetch
                    await page.wait_for_timeout(settle_ms)
                    prefetched.append(await page.evaluate(PAN_JS, list(move)))
            await context.close()
        await browser.close()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "open_ms": [round(x) for x in open_ms],
        "open_ms_median": round(statistics.median(open_ms)),
        "adjacent_cold_ms": [round(x) for x in cold],
        "adjacent_cold_ms_median": round(statistics.median(cold)),
        "adjacent_prefetched_ms": [round(x) for x in prefetched],
        "adjacent_prefetched_ms_median": round(statistics.median(prefetched)),
        "settle_ms": settle_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=5)
    parser.add_argument("--pans", type=int, default=12)
    parser.add_argument("--settle-ms", type=int, default=1000)
    parser.add_argument(
        "--slide", type=Path, default=BIG_SLIDE if BIG_SLIDE.exists() else SMALL_SLIDE
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = asyncio.run(run(args.slide, args.opens, args.pans, args.settle_ms))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
