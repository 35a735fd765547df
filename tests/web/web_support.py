"""Helpers of the browser end-to-end tests: headless Chromium, console errors, ingest."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from hub.archive import Archive, Source

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def ingest_all(archive: Archive, paths: list[Path]) -> str:
    """Ingest files through the one ingest path; returns the study UID."""
    study = ""
    for path in paths:
        result = await archive.ingest_file(path, source=Source(door="import"))
        assert result.ok, result.message
        study = result.study_uid
    return study


class Console:
    """Errors a page reports: console errors (failed loads among them) and uncaught exceptions."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location}")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def signed_in_page(hub, path: str) -> AsyncIterator[tuple[Page, Console]]:
    """A page of the hub at ``path``, signed in as its test administrator, with its console."""
    async with chromium() as browser:
        page = await new_page(browser, hub)
        console = Console(page)
        await page.goto(f"{hub.url}{path}")
        yield page, console


async def new_page(browser: Browser, hub, width: int = 1280, height: int = 800) -> Page:
    """A page in a fresh context (empty cache) that signs in as the hub's test administrator."""
    context = await browser.new_context(
        viewport={"width": width, "height": height}, device_scale_factor=1
    )
    await context.set_extra_http_headers(hub.admin_headers)
    return await context.new_page()
