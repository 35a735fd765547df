"""Upload to first view, against upload to done: how soon a converting slide can be read.

Runs the whole hub in a child process on 127.0.0.1 (as bench/upload_bench.py does), uploads a
vendor slide through /api/uploads, and from the moment the upload is complete (the job starts)
measures, --runs times:

  study     the study exists: the first instance (the thumbnail) is stored
  first     the viewer page, opened in headless Chromium as soon as the study exists, has
            painted its first view (every tile of it), on the levels stored by then
  done      the job is finished: every instance converted and stored
  refined   the open viewer shows the whole pyramid (it re-opens on finer levels as they come)

Before instances were ingested as they were written, the first view came only after done.
Prints one JSON document. Target: first view within 3 s of the upload completing.

    python -m bench.first_view_bench [--slide /tmp/peers/data/big-40000x30000.svs] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
from playwright.async_api import async_playwright

from bench.upload_bench import SERVER, free_port, send_file

BIG = Path("/tmp/peers/data/big-40000x30000.svs")
SMALL = Path(__file__).resolve().parents[1].parent / "shared/corpus/wsi/CMU-1-Small-Region.svs"
CHROMIUM = "/usr/bin/chromium"
POLL_S = 0.02


async def one_run(base: str, token: str, slide: Path, browser) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        job, upload_s = await send_file(http, slide, slide.name)
        t0 = time.perf_counter()

        async def state() -> dict:
            async with http.get(f"/api/jobs/{job['id']}") as r:
                return await r.json()

        while not (now := await state())["study_uid"] and not now["finished"]:
            await asyncio.sleep(POLL_S)
        if now["status"] == "failed":
            raise SystemExit(f"the conversion failed: {now['error']}")
        study_s = time.perf_counter() - t0

        async def until_done() -> float:
            while not (await state())["finished"]:
                await asyncio.sleep(POLL_S)
            return time.perf_counter() - t0

        done = asyncio.create_task(until_done())
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        await context.set_extra_http_headers(headers)
        page = await context.new_page()
        await page.goto(f"{base}/viewer/{now['study_uid']}")
        await page.evaluate("() => window.tesseraViewer.ready")
        first_s = time.perf_counter() - t0
        painted = await page.evaluate("() => window.tesseraViewer.firstPaint")
        done_s = await done
        final = await state()
        await page.evaluate("() => window.tesseraViewer.converted")
        refined_s = time.perf_counter() - t0
        levels = await page.evaluate(
            "() => window.tesseraViewer.state.slides[window.tesseraViewer.state.current]"
            ".levels.length"
        )
        await context.close()
    return {
        "upload_s": round(upload_s, 2),
        "study_s": round(study_s, 2),
        "first_view_s": round(first_s, 2),
        "first_view_levels": painted["levels"],
        "first_view_width": painted["width"],
        "done_s": round(done_s, 2),
        "refined_s": round(refined_s, 2),
        "levels": levels,
        "instances": final["instances"],
        "status": final["status"],
    }


async def bench(base: str, token: str, slide: Path, runs: int) -> list[dict]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            return [await one_run(base, token, slide, browser) for _ in range(runs)]
        finally:
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path, default=BIG if BIG.exists() else SMALL)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(Path(tmp) / "data"), str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            token = ""
            while not token:
                line = server.stdout.readline()
                if not line:
                    raise SystemExit("the hub did not start")
                if line.startswith("TOKEN "):
                    token = line.split()[1]
            runs = asyncio.run(bench(f"http://127.0.0.1:{port}", token, args.slide, args.runs))
        finally:
            # The hub's conversion worker processes too: a terminated hub does not stop them.
            children = psutil.Process(server.pid).children(recursive=True)
            server.terminate()
            server.wait(10)
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.terminate()
    median = {
        key: statistics.median(run[key] for run in runs)
        for key in ("upload_s", "study_s", "first_view_s", "done_s", "refined_s")
    }
    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "slide": args.slide.name,
        "bytes": args.slide.stat().st_size,
        "median": median,
        "runs": runs,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
