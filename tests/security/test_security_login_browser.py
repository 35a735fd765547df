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
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            # A page behind the gate sends the browser to the login page, keeping its path.
            await page.goto(gate.url + "/")
            assert page.url == gate.url + "/login?next=/"

            await page.fill("#username", "pathologist-user")
            await page.fill("#password", "wrong password!")
            await page.click("button[type=submit]")
            await page.wait_for_function("document.getElementById('message').textContent != ''")
            assert "Wrong user or password" in await page.text_content("#message")

            await page.fill("#password", PASSWORD)
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            assert page.url == gate.url + "/"
            assert '"user": "pathologist-user"' in await page.content()
            cookies = await page.context.cookies()
            (session,) = [c for c in cookies if c["name"] == "tessera_session"]
            assert session["httpOnly"] and session["sameSite"] == "Strict"
            # The 401 of the wrong password shows in the console; nothing else may.
            assert [p for p in problems if "401" not in p] == []
        finally:
            await browser.close()
