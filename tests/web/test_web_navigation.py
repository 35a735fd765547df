"""One navigation on every page, showing each signed-in user the sections its role may use."""

from __future__ import annotations

import pytest
from web_support import Console, chromium

from hub.security.accounts import create_user, issue_token

pytestmark = pytest.mark.browser

EVERYTHING = ["Studies", "Upload", "Worklist", "Tele-ultrasound", "Forwarding", "Dose", "Admin"]
BY_ROLE = {
    "admin": EVERYTHING,
    "clinic": ["Studies", "Upload", "Worklist", "Tele-ultrasound"],
    "pathologist": ["Studies"],
    "specialist": ["Studies", "Tele-ultrasound"],
}
PAGES = ["/studies", "/upload", "/worklist", "/forwarding", "/dose", "/admin", "/telehealth/clinic"]


async def _headers(hub_server, role: str) -> dict[str, str]:
    await create_user(hub_server.archive.engine, f"nav-{role}", role, None)
    _, secret = await issue_token(hub_server.archive.engine, f"nav-{role}", ttl_seconds=600)
    return {"Authorization": f"Bearer {secret}"}


async def _sections(page, path: str) -> list[str]:
    await page.goto(path)
    nav = page.locator("header.top nav[data-sections=shown]")
    await nav.wait_for(state="attached")
    return [text.strip() for text in await nav.locator("a").all_inner_texts()]


async def test_each_role_sees_its_sections(hub_server) -> None:
    async with chromium() as browser:
        for role, expected in BY_ROLE.items():
            context = await browser.new_context()
            await context.set_extra_http_headers(await _headers(hub_server, role))
            page = await context.new_page()
            console = Console(page)
            assert await _sections(page, f"{hub_server.url}/studies") == expected, role
            assert console.errors == [], role
            await context.close()


async def test_the_navigation_is_the_same_on_every_page(hub_server) -> None:
    async with chromium() as browser:
        context = await browser.new_context()
        await context.set_extra_http_headers(hub_server.admin_headers)
        page = await context.new_page()
        for path in PAGES:
            assert await _sections(page, f"{hub_server.url}{path}") == EVERYTHING, path
            current = page.locator("header.top nav a[aria-current=page]")
            assert await current.get_attribute("href") == path
        await context.close()
