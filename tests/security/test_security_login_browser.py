"""The login page in headless Chromium: sign in, land on the asked page, no CSP violations."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, async_playwright
from security_support import PASSWORD, Gate, reset_password

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.asynccontextmanager
async def _page() -> AsyncIterator[tuple[Page, list[str]]]:
    """A page in headless Chromium, and the script errors it reports."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            page = await browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            yield page, problems
        finally:
            await browser.close()


@pytest.mark.browser
async def test_sign_in_through_the_login_page(gate: Gate) -> None:
    async with _page() as (page, problems):
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and "Failed to load resource" not in m.text
                else None
            ),
        )
        failed: list[str] = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)

        # A page behind the gate sends the browser to the login page, keeping its path.
        await page.goto(gate.url + "/")
        assert page.url == gate.url + "/login?next=/"

        await page.fill("#username", "pathologist-user")
        await page.fill("#password", "wrong password!")
        await page.click("button[type=submit]")
        # (the page's CSP forbids eval, so wait on the DOM rather than a JS predicate)
        await page.locator("#message", has_text="Wrong user or password").wait_for()

        await page.fill("#password", PASSWORD)
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        assert page.url == gate.url + "/"
        assert '"user": "pathologist-user"' in await page.content()
        cookies = await page.context.cookies()
        (session,) = [c for c in cookies if c["name"] == "tessera_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        # No CSP violation or script error; the only failed loads are the wrong password's
        # 401 and the favicon of the stand-in home page.
        assert problems == []
        assert [u for u in failed if not u.endswith("/favicon.ico")] == [gate.url + "/api/login"]


@pytest.mark.browser
async def test_a_one_time_password_leads_to_choosing_a_new_one(gate: Gate) -> None:
    one_time = await reset_password(gate, "clinic-user")
    async with _page() as (page, problems):
        await page.goto(gate.url + "/")
        await page.fill("#username", "clinic-user")
        await page.fill("#password", one_time)
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        assert page.url == gate.url + "/account/password?next=/"
        await page.locator("#why", has_text="one-time password").wait_for()

        # Any page asked for meanwhile comes back here.
        await page.goto(gate.url + "/")
        assert page.url == gate.url + "/account/password?next=/"
        await page.fill("#current", one_time)
        await page.fill("#new", "my own passphrase at last")
        await page.fill("#again", "not the same passphrase")
        await page.click("button[type=submit]")
        await page.locator("#message", has_text="differ").wait_for()

        await page.fill("#again", "my own passphrase at last")
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        assert page.url == gate.url + "/"
        assert '"user": "clinic-user"' in await page.content()
        assert problems == []
