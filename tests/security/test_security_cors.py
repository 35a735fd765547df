"""Cross-origin access: preflights answered before the access gate, CORS headers only for the
configured origins, and a page on another origin in headless Chromium that can (or cannot)
read the study list."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from hubtest import HubServer, free_port, running_hub
from playwright.async_api import async_playwright

from hub.app import build_app
from hub.archive import Archive
from hub.config import Settings
from hub.serve.proxy import Upstream

ALLOWED = "http://127.0.0.1:{port}"
PREFLIGHT = {
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization, accept",
}
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def page_port() -> int:
    return free_port()


@pytest.fixture
async def cors_hub(settings: Settings, page_port: int) -> AsyncIterator[HubServer]:
    settings.cors_origins = [ALLOWED.format(port=page_port)]
    async with running_hub(settings) as hub:
        yield hub


async def _options(url: str, origin: str) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.options(url, headers={"Origin": origin, **PREFLIGHT}) as r,
    ):
        return r.status, dict(r.headers)


async def test_preflight_from_a_listed_origin(cors_hub: HubServer, page_port: int) -> None:
    origin = ALLOWED.format(port=page_port)
    status, headers = await _options(cors_hub.url + "/dicomweb/studies", origin)
    assert status == 204  # no credentials on a preflight, and still not a 401
    assert headers["Access-Control-Allow-Origin"] == origin
    assert headers["Access-Control-Allow-Credentials"] == "true"
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "accept", "if-none-match"} <= allowed
    assert "GET" in headers["Access-Control-Allow-Methods"]
    assert "Origin" in headers["Vary"]


async def test_unlisted_origin_gets_no_cors_headers(cors_hub: HubServer) -> None:
    status, headers = await _options(cors_hub.url + "/dicomweb/studies", "http://evil.test")
    assert status != 204
    assert not [h for h in headers if h.lower().startswith("access-control-")]
    async with (
        cors_hub.session() as session,
        session.get(
            cors_hub.url + "/dicomweb/studies", headers={"Origin": "http://evil.test"}
        ) as r,
    ):
        assert r.status == 200
        assert not [h for h in r.headers if h.lower().startswith("access-control-")]
        assert "Origin" in r.headers["Vary"]


async def test_answers_to_a_listed_origin_expose_dicomweb_headers(
    cors_hub: HubServer, page_port: int
) -> None:
    origin = ALLOWED.format(port=page_port)
    async with cors_hub.session() as session:
        async with session.get(cors_hub.url + "/dicomweb/studies", headers={"Origin": origin}) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == origin
            exposed = {h.strip() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
            assert {"Content-Type", "Warning", "ETag", "Content-Length", "Content-Location"} <= (
                exposed
            )
        # Refusals carry them too, so that a page can read why.
        async with (
            aiohttp.ClientSession() as anonymous,
            anonymous.get(cors_hub.url + "/dicomweb/studies", headers={"Origin": origin}) as r,
        ):
            assert r.status == 401
            assert r.headers["Access-Control-Allow-Origin"] == origin


async def test_no_origins_no_cors(hub_server: HubServer) -> None:
    status, headers = await _options(hub_server.url + "/dicomweb/studies", "http://127.0.0.1:1")
    assert status == 405
    assert not [h for h in headers if h.lower().startswith("access-control-")]


async def test_a_reader_answers_preflights_itself(settings: Settings, page_port: int) -> None:
    """A reader with no primary behind it (a socket nobody listens on) still answers them."""
    origin = ALLOWED.format(port=page_port)
    settings.cors_origins = [origin]
    await (await Archive.open(settings)).close()  # a reader never creates the index itself
    upstream = Upstream(str(settings.data_dir / "nobody.sock"))
    await upstream.start()
    app = await build_app(dataclasses.replace(settings), upstream=upstream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        status, headers = await _options(f"http://127.0.0.1:{port}/dicomweb/studies", origin)
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == origin
    finally:
        await runner.cleanup()
        await upstream.close()


PAGE = """<!doctype html><html><body><pre id="out"></pre><script>
fetch({url}, {{headers: {{Authorization: {auth}, Accept: "application/dicom+json"}}}})
  .then(async (r) => ({{status: r.status, studies: (await r.json()).length,
                       type: r.headers.get("Content-Type")}}))
  .catch((e) => ({{error: String(e)}}))
  .then((result) => {{ document.getElementById("out").textContent = JSON.stringify(result); }});
</script></body></html>"""


@contextlib.asynccontextmanager
async def _page_site(port: int, hub: HubServer) -> AsyncIterator[str]:
    """A second web server, on its own origin, serving a page that reads the hub's studies."""
    html = PAGE.format(
        url=json.dumps(hub.url + "/dicomweb/studies"),
        auth=json.dumps(hub.admin_headers["Authorization"]),
    )

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def _result_of(browser, url: str) -> dict:
    page = await browser.new_page()
    try:
        await page.goto(url)
        out = page.locator("#out")
        await out.filter(has_text="{").wait_for(timeout=30_000)
        return json.loads(await out.text_content() or "{}")
    finally:
        await page.close()


@pytest.mark.browser
async def test_a_page_on_another_origin_in_chromium(cors_hub: HubServer, page_port: int) -> None:
    other_port = free_port()  # an origin that is not listed
    async with (
        _page_site(page_port, cors_hub) as listed,
        _page_site(other_port, cors_hub) as unlisted,
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            allowed = await _result_of(browser, listed)
            blocked = await _result_of(browser, unlisted)
        finally:
            await browser.close()
    assert allowed == {"status": 200, "studies": 0, "type": "application/dicom+json"}
    assert "error" in blocked and "Failed to fetch" in blocked["error"]
