"""The dose page in headless Chromium: a patient's chart and totals, and the patient list."""

from __future__ import annotations

import pytest
from openrem_files import openrem_test_files
from web_support import Console, chromium, ingest_all, new_page

from hub.dose.estimate import load_k_table

pytestmark = pytest.mark.browser

MULTI = (
    "CT-RDSR-Siemens-Multi-1.dcm",
    "CT-RDSR-Siemens-Multi-2.dcm",
    "CT-RDSR-Siemens-Multi-3.dcm",
)
CONTINUED = ("CT-RDSR-Siemens-Continued-1.dcm", "CT-RDSR-Siemens-Continued-2.dcm")


async def test_the_dose_page_shows_the_chart_and_totals_of_a_patient(hub_server) -> None:
    files = openrem_test_files()
    await ingest_all(hub_server.archive, [files / n for n in MULTI])
    await ingest_all(hub_server.archive, [files / n for n in CONTINUED])
    async with (
        hub_server.session() as session,
        session.get(f"{hub_server.url}/api/dose/patients") as resp,
    ):
        patients = {p["name"]: p for p in (await resp.json())["patients"]}
    multi = patients["OpenREM^MultiRDSR"]
    lifetime = load_k_table().k("chest", "adult") * 236.09
    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        console = Console(page)
        await page.goto(f"{hub_server.url}/dose")
        await page.wait_for_selector(f"#patients tr[data-identity='{multi['id']}']")
        assert await page.locator("#patients tbody tr").count() == 2
        await page.click(f"#patients tr[data-identity='{multi['id']}'] a")
        await page.wait_for_selector("#profile:not([hidden])")
        shown = await page.inner_text("#totals tr[data-window=lifetime] td.total")
        assert shown == f"{lifetime:.2f}"
        assert await page.inner_text("#totals tr[data-window='12w'] td.total") == "0.00"
        assert await page.locator("#chart circle.study").count() == 1
        assert await page.locator("#chart path.series").count() == 1
        assert await page.inner_text("#studies tbody td.dlp") == "236.09"
        assert "not a measure of this patient's individual risk" in await page.inner_text("#notice")
        assert console.errors == []
