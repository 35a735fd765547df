"""The conformance statement's page, open without signing in, shows the statement's tables."""

from __future__ import annotations

import aiohttp
import pytest
from web_support import Console, chromium

pytestmark = pytest.mark.browser


async def test_the_page_shows_the_statement_to_anyone(hub_server) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{hub_server.url}/api/conformance") as resp,
    ):
        assert resp.status == 200
        statement = await resp.json()
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()  # not signed in
        console = Console(page)
        await page.goto(f"{hub_server.url}/conformance")
        await page.wait_for_selector("body[data-shown=statement]")
        assert page.url.endswith("/conformance")  # no detour to the sign-in page

        product = await page.inner_text("#product")
        assert statement["product"]["implementation_class_uid"] in product
        assert statement["product"]["version"] in product

        services = page.locator("#dimse tbody tr")
        assert await services.count() == len(statement["dimse"]["services"])
        storage = page.locator("#dimse tr[data-service=Storage][data-role=SCP]")
        (listed,) = [
            s
            for s in statement["dimse"]["services"]
            if s["service"] == "Storage" and s["role"] == "SCP"
        ]
        uids = await storage.locator("li[data-uid]").evaluate_all(
            "items => items.map(i => i.dataset.uid)"
        )
        assert uids == [s["uid"] for s in listed["sop_classes"]] + [
            t["uid"] for t in listed["transfer_syntaxes"]
        ]
        await storage.locator("summary").first.click()
        await storage.get_by_text("CT Image Storage (1.2.840.10008.5.1.4.1.1.2)").wait_for()

        models = page.locator("#models tbody tr")
        assert await models.count() == len(statement["dimse"]["query_retrieve"]["models"])
        mwl = page.locator("#mwl-keys tbody tr")
        assert await mwl.count() == len(statement["dimse"]["worklist"]["matching_keys"])
        resources = page.locator("#dicomweb tbody tr")
        assert await resources.count() == len(statement["dicomweb"]["resources"])
        keys = await page.locator("#qido-keys tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.keyword)"
        )
        assert keys == [k["keyword"] for k in statement["dicomweb"]["qido"]["matching_keys"]]
        name_row = page.locator("#qido-keys tr[data-keyword=PatientName] td")
        assert await name_row.all_inner_texts() == [
            "PatientName",
            "00100010",
            "PATIENT",
            "single value, wildcard, case-insensitive",
        ]
        assert await page.locator("#security li").count() == len(statement["security"])
        # The navigation asks who is signed in; the browser logs the 401 it gets as an error.
        assert [e for e in console.errors if "/api/me" not in e] == []
        assert len(console.errors) <= 1


async def test_signed_in_the_page_has_the_one_navigation(hub_server) -> None:
    async with chromium() as browser:
        context = await browser.new_context()
        await context.set_extra_http_headers(hub_server.admin_headers)
        page = await context.new_page()
        console = Console(page)
        await page.goto(f"{hub_server.url}/conformance")
        nav = page.locator("header.top nav[data-sections=shown]")
        await nav.wait_for(state="attached")
        links = [t.strip() for t in await nav.locator("a").all_inner_texts()]
        assert links[0] == "Studies" and links[-1] == "Conformance" and "Admin" in links
        await page.wait_for_selector("body[data-shown=statement]")
        assert console.errors == []
        await context.close()
