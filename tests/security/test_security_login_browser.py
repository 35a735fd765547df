"""The login page in headless Chromium: sign in, land on the asked page, no CSP violations."""

from __future__ import annotations

import pytest
from playwright.async_api import async_playwright
from security_support import PASSWORD, Gate

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.browser
async def test_sign_in_through_the_login_page(gate: Gate) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            page = await browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
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
            assert [u for u in failed if not u.endswith("/favicon.ico")] == [
                gate.url + "/api/login"
            ]
        finally:
            await browser.close()
