"""The worklist page in headless Chromium: an administrator schedules, filters, starts,
completes and cancels procedure steps through the page, each effect checked through the JSON
API; a clinic sees only the steps assigned to it and cannot schedule; an account without
worklist.read is told so without a refused call."""

from __future__ import annotations

import pytest
from hubtest import HubServer
from playwright.async_api import Browser, Page
from web_support import Console, chromium, new_page

from hub.security.accounts import create_user, issue_token

pytestmark = pytest.mark.browser


async def _api(hub: HubServer, method: str, path: str, body: dict | None = None) -> dict:
    async with hub.session() as http, http.request(method, f"{hub.url}{path}", json=body) as r:
        assert r.status in (200, 201), await r.text()
        return await r.json()


async def _schedule(hub: HubServer, **fields) -> dict:
    return await _api(hub, "POST", "/api/worklist", {"modality": "US", **fields})


async def _item(hub: HubServer, accession: str) -> dict:
    (item,) = (await _api(hub, "GET", f"/api/worklist?accession={accession}"))["items"]
    return item


async def _page_as(browser: Browser, hub: HubServer, username: str, role: str) -> Page:
    await create_user(hub.archive.engine, username, role, None)
    _, secret = await issue_token(hub.archive.engine, username, ttl_seconds=600)
    context = await browser.new_context()
    await context.set_extra_http_headers({"Authorization": f"Bearer {secret}"})
    return await context.new_page()


async def _shown(page: Page) -> list[str]:
    return await page.locator("#steps tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.accession)"
    )


async def test_an_administrator_schedules_filters_and_moves_steps(hub_server: HubServer):
    hub = hub_server
    other = await _schedule(hub, patient_name="Roe^Richard", patient_id="P2", accession="ACC2")
    async with chromium() as browser:
        page = await new_page(browser, hub)
        console = Console(page)
        await page.goto(f"{hub.url}/worklist")
        await page.wait_for_selector("#steps tr[data-accession=ACC2]")

        form = "#new-step"
        await page.fill(f"{form} [name=patient_name]", "Doe^Jane")
        await page.fill(f"{form} [name=patient_id]", "P1")
        await page.fill(f"{form} [name=birth_date]", "1980-05-01")
        await page.select_option(f"{form} [name=sex]", "F")
        await page.fill(f"{form} [name=modality]", "ct")
        await page.fill(f"{form} [name=accession]", "ACC1")
        await page.fill(f"{form} [name=requested_procedure_description]", "CT chest")
        await page.fill(f"{form} [name=station_ae]", "CT01")
        await page.fill(f"{form} [name=start]", "2030-01-02T09:30")
        await page.click(f"{form} button[type=submit]")
        row = "#steps tr[data-accession=ACC1]"
        await page.wait_for_selector(row)
        cells = await page.locator(f"{row} td").all_inner_texts()
        assert cells[:9] == [
            "Doe Jane", "P1", "ACC1", "CT", "CT chest", "CT01", "2030-01-02 09:30", "SCHEDULED", ""
        ]  # fmt: skip
        item = await _item(hub, "ACC1")
        assert (item["birth_date"], item["sex"], item["start_date"], item["start_time"]) == (
            "19800501", "F", "20300102", "093000"
        )  # fmt: skip

        await page.fill("#filter [name=patient_name]", "doe*")
        await page.click("#filter button[type=submit]")
        await page.wait_for_selector("#steps tr[data-accession=ACC2]", state="detached")
        assert await _shown(page) == ["ACC1"]

        await page.click(f"{row} button:text('Start')")
        await page.wait_for_selector(f"{row} td.status.started")
        assert (await _item(hub, "ACC1"))["status"] == "STARTED"
        await page.click(f"{row} button:text('Complete')")
        await page.wait_for_selector(f"{row} td.status.completed")
        assert (await _item(hub, "ACC1"))["status"] == "COMPLETED"
        assert await page.locator(f"{row} button").count() == 0

        await page.fill("#filter [name=patient_name]", "")
        await page.click("#filter button[type=submit]")
        other_row = "#steps tr[data-accession=ACC2]"
        await page.click(f"{other_row} button:text('Cancel')")
        await page.wait_for_selector(f"{other_row} td.status.cancelled")
        assert (await _item(hub, "ACC2"))["status"] == "CANCELLED"
        assert other["id"] != item["id"]
        assert console.errors == []


async def test_a_forbidden_transition_shows_its_reason(hub_server: HubServer):
    hub = hub_server
    item = await _schedule(hub, patient_name="Poe^Edgar", patient_id="P3", accession="ACC3")
    async with chromium() as browser:
        page = await new_page(browser, hub)
        await page.goto(f"{hub.url}/worklist")
        row = "#steps tr[data-accession=ACC3]"
        await page.wait_for_selector(f"{row} button:text('Start')")
        await _api(hub, "POST", f"/api/worklist/{item['id']}/cancel")  # meanwhile, elsewhere

        await page.click(f"{row} button:text('Start')")
        await page.wait_for_selector("#error:not([hidden])")
        assert await page.inner_text("#error") == f"item {item['id']} is CANCELLED; cannot start"
        await page.wait_for_selector(f"{row} td.status.cancelled")
        assert (await _item(hub, "ACC3"))["status"] == "CANCELLED"


async def test_an_open_step_is_edited_in_the_form(hub_server: HubServer):
    hub = hub_server
    item = await _schedule(
        hub, patient_name="Doe^Jon", patient_id="P4", accession="ACC4", start="2030-01-02T09:30"
    )
    async with chromium() as browser:
        page = await new_page(browser, hub)
        console = Console(page)
        await page.goto(f"{hub.url}/worklist")
        row = "#steps tr[data-accession=ACC4]"
        await page.click(f"{row} button:text('Edit')")
        form = "#new-step"
        assert await page.input_value(f"{form} [name=patient_name]") == "Doe^Jon"
        assert await page.input_value(f"{form} [name=start]") == "2030-01-02T09:30"
        assert await page.inner_text("#schedule h2") == "Edit procedure step ACC4"
        await page.fill(f"{form} [name=patient_name]", "Doe^John")
        await page.fill(f"{form} [name=start]", "2030-01-03T11:00")
        await page.click(f"{form} button[type=submit]")
        await page.wait_for_selector(f"{row} td.patient:text('Doe John')")

        edited = await _item(hub, "ACC4")
        assert (edited["patient_name"], edited["start_date"], edited["start_time"]) == (
            "Doe^John", "20300103", "110000"
        )  # fmt: skip
        assert (edited["id"], edited["study_uid"]) == (item["id"], item["study_uid"])
        assert await page.inner_text("#schedule h2") == "Schedule a procedure step"
        assert await page.input_value(f"{form} [name=patient_name]") == ""

        await page.click(f"{row} button:text('Cancel')")
        await page.wait_for_selector(f"{row} td.status.cancelled")
        assert await page.locator(f"{row} button:text('Edit')").count() == 0
        assert console.errors == []


async def test_a_clinic_sees_only_its_steps_and_cannot_schedule(hub_server: HubServer):
    hub = hub_server
    async with chromium() as browser:
        page = await _page_as(browser, hub, "clinic-north", "clinic")
        await _schedule(
            hub, patient_name="Ours^A", patient_id="N1", accession="OURS", clinic="clinic-north"
        )
        await _schedule(hub, patient_name="Theirs^B", patient_id="S1", accession="THEIRS")
        console = Console(page)
        await page.goto(f"{hub.url}/worklist")
        await page.wait_for_selector("#steps tr[data-accession=OURS]")
        assert await _shown(page) == ["OURS"]
        assert await page.inner_text("#steps tr[data-accession=OURS] td.clinic") == "clinic-north"
        assert not await page.is_visible("#schedule")
        assert await page.locator("#steps button").count() == 0
        assert console.errors == []


async def test_an_account_without_worklist_read_is_told_so(hub_server: HubServer):
    hub = hub_server
    async with chromium() as browser:
        page = await _page_as(browser, hub, "dr-path", "pathologist")
        console = Console(page)
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        await page.goto(f"{hub.url}/worklist")
        await page.wait_for_selector("#error:not([hidden])")
        assert await page.inner_text("#error") == "Your account may not see the worklist."
        assert not await page.is_visible("#sections")
        assert not [url for url in asked if "/api/worklist" in url]
        assert console.errors == []
