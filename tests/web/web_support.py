"""The hub with the browser UI for end-to-end tests, and a headless Chromium to drive it."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

import hub.jobs
from hub.app import build_app
from hub.app_keys import ARCHIVE_KEY
from hub.archive import Archive, Source
from hub.config import Settings
from web.routes import setup as setup_web

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class UiHub:
    url: str
    archive: Archive
    settings: Settings
    headers: dict[str, str] = field(default_factory=dict)


def has_ui(app: web.Application) -> bool:
    return "page.viewer" in app.router.named_resources()


@contextlib.asynccontextmanager
async def own_ui_hub(settings: Settings) -> AsyncIterator[UiHub]:
    """The composed app plus the jobs and web packages, for as long as hub/app.py lacks them."""
    app = await build_app(settings)
    if "slides.upload.create" not in app.router.named_resources():
        hub.jobs.setup(app)
    setup_web(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.port)
    await site.start()
    try:
        ui = UiHub(f"http://127.0.0.1:{settings.port}", app[ARCHIVE_KEY], settings)
        if "public.login.page" in app.router.named_resources():
            ui.headers = await admin_headers(ui.archive)
        yield ui
    finally:
        await runner.cleanup()


async def admin_headers(archive: Archive) -> dict[str, str]:
    """A bearer token of a fresh administrator, sent by the browser on every request."""
    from hub.security import accounts

    await accounts.create_user(archive.engine, "ui-tester", "admin", secrets.token_urlsafe(16))
    _, secret = await accounts.issue_token(archive.engine, "ui-tester", label="browser tests")
    return {"Authorization": f"Bearer {secret}"}


async def ingest_all(archive: Archive, paths: list[Path]) -> str:
    """Ingest files through the one ingest path; returns the study UID."""
    study = ""
    for path in paths:
        result = await archive.ingest_file(path, source=Source(door="import"))
        assert result.ok, result.message
        study = result.study_uid
    return study


class Console:
    """Errors a page reports: console errors, uncaught exceptions and failed requests."""

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


async def new_page(browser: Browser, hub_: UiHub, width: int = 1280, height: int = 800) -> Page:
    context = await browser.new_context(
        viewport={"width": width, "height": height}, device_scale_factor=1
    )
    if hub_.headers:
        await context.set_extra_http_headers(hub_.headers)
    return await context.new_page()
