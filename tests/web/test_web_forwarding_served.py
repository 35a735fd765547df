"""A rule changed on the forwarding page while `tessera serve --workers 2` runs routes the next
object, without a restart, whichever of the two processes answered the page."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from dicomweb_client.api import DICOMwebClient
from forward.forward_peers import StoreSCP, forward_config
from hubtest import HubProcess, bearer_for, free_port
from playwright.async_api import Page
from pydicom import dcmread
from pydicom.data import get_testdata_file
from web_support import Console, chromium

pytestmark = [pytest.mark.peers, pytest.mark.browser]

CT = Path(get_testdata_file("CT_small.dcm"))
MR = Path(get_testdata_file("MR_small.dcm"))


@pytest.fixture
def served(tmp_path: Path, database_url):
    """The hub on the test's index (PostgreSQL where the suite runs on it), with one target."""
    if shutil.which("storescp") is None:
        pytest.skip("dcmtk storescp is not installed")
    pacs = StoreSCP(tmp_path / "pacs")
    pacs.start()
    extra = {"forward": forward_config({"pacs": pacs.target()}, [])}
    data = tmp_path / "hub"
    with contextlib.ExitStack() as stack:
        stack.callback(pacs.stop)
        env = {"TESSERA_EXTRA": json.dumps(extra)}
        hub = HubProcess(data, free_port(), "--workers", "2", env=env)
        stack.callback(hub.stop)
        threading.Thread(target=hub.proc.stdout.read, daemon=True).start()  # keep it flowing
        yield hub, pacs, bearer_for(data, "ops", "admin")


async def _route_modality_to_pacs(page: Page, modality: str) -> None:
    """On the forwarding page: the rule "by-modality" sends ``modality`` to pacs (added the first
    time, edited after)."""
    form, row = "#rule-form", "#config-rules tr[data-rule=by-modality]"
    if await page.locator(row).count():
        version = int(await page.inner_text(f"{row} td.version"))
        await page.click(f"{row} button:text('Edit')")
    else:
        version = 0
        await page.fill(f"{form} [name=name]", "by-modality")
        await page.check(f"{form} [name=targets][value=pacs]")
    await page.fill(f"{form} [name=modality]", modality)
    await page.click(f"{form} button[type=submit]")
    await page.wait_for_selector(f"{row} td.version:text-is('{version + 1}')")
    assert await page.inner_text(f"{row} td.match") == f"modality {modality}"


def _store(hub: HubProcess, headers: dict, path: Path, **changes: str) -> str:
    ds = dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    DICOMwebClient(f"{hub.url}/dicomweb", headers=headers).store_instances([ds])
    return ds.SOPInstanceUID


async def _arrived(pacs: StoreSCP, sop_uid: str, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sop_uid in pacs.received():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_a_rule_changed_in_the_browser_routes_the_next_object(served) -> None:
    hub, pacs, admin = served
    async with chromium() as browser:
        context = await browser.new_context()
        await context.set_extra_http_headers(admin)
        page = await context.new_page()
        console = Console(page)
        await page.goto(f"{hub.url}/forwarding")
        await page.wait_for_selector("#editor:not([hidden])")

        await _route_modality_to_pacs(page, "MR")
        mr = await asyncio.to_thread(_store, hub, admin, MR)
        assert await _arrived(pacs, mr)

        await _route_modality_to_pacs(page, "CT")
        second_mr = await asyncio.to_thread(
            _store, hub, admin, MR, SOPInstanceUID="1.2.826.0.1.3680043.8.498.1001"
        )
        ct = await asyncio.to_thread(_store, hub, admin, CT)
        assert await _arrived(pacs, ct)
        await page.wait_for_selector(f"#tasks tr:has(td.uid:text('{ct}')) td.state.done")
        assert await page.locator(f"#tasks td.uid:text('{second_mr}')").count() == 0
        assert second_mr not in pacs.received()
        assert console.errors == []
