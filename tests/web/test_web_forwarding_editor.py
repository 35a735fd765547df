"""The forwarding targets and rules edited on the forwarding page in headless Chromium: a target
added and tested with C-ECHO against a real dcmtk storescp, a rule tried with a dry run and
saved, the next stored object delivered; a DICOMweb target whose test fails says why; a stale
edit asks for a reload; accounts that may only watch the queue see no editor."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from forward.forward_peers import FAST_RETRY, FAST_TIMEOUTS, StoreSCP, dataset_sha256
from hubtest import HubServer, free_port, running_hub
from playwright.async_api import Page
from pydicom import dcmread
from pydicom.data import get_testdata_file
from web_support import chromium, ingest_all, new_page, signed_in_page

from hub.config import Settings, sections
from hub.forward.keys import FORWARDER_KEY

pytestmark = [pytest.mark.browser, pytest.mark.peers]

CT = Path(get_testdata_file("CT_small.dcm"))
MR = Path(get_testdata_file("MR_small.dcm"))


def forwarding(targets: dict) -> dict:
    return {
        "targets": targets,
        "rules": [],
        "retry": FAST_RETRY,
        "timeouts": FAST_TIMEOUTS,
        "poll_interval": 0.3,
    }


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[StoreSCP]:
    if shutil.which("storescp") is None:
        pytest.skip("dcmtk storescp is not installed")
    scp = StoreSCP(tmp_path / "pacs")
    scp.start()
    yield scp
    scp.stop()


@pytest.fixture
async def editable_hub(tmp_path: Path) -> AsyncIterator[HubServer]:
    """A hub with forwarding on and no targets or rules yet."""
    settings = Settings(
        data_dir=tmp_path / "data", port=free_port(), **sections(forward=forwarding({}))
    )
    async with running_hub(settings) as hub:
        yield hub


async def arrived(scp: StoreSCP, sop_uid: str, within: float = 60) -> str:
    """The sha256 of the data set storescp wrote for ``sop_uid``, once it is there."""
    deadline = time.monotonic() + within
    while sop_uid not in (received := scp.received()):
        assert time.monotonic() < deadline, f"{sop_uid} never reached storescp: {received}"
        await asyncio.sleep(0.2)
    return received[sop_uid]


async def test_a_target_and_rule_added_on_the_page_deliver_the_next_study(
    editable_hub: HubServer, storescp: StoreSCP
):
    hub = editable_hub
    ct_uid, mr_uid = (str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (CT, MR))
    await ingest_all(hub.archive, [CT])  # stored before any rule: only the dry run sees it
    async with signed_in_page(hub, "/forwarding") as (page, console):
        await page.wait_for_selector("#editor:not([hidden])")

        form = "#target-form"
        await page.fill(f"{form} [name=name]", "pacs")
        await page.select_option(f"{form} [name=type]", "dimse")
        await page.fill(f"{form} [name=called_ae]", storescp.ae_title)
        await page.fill(f"{form} [name=host]", "127.0.0.1")
        await page.fill(f"{form} [name=port]", str(storescp.port))
        await page.click(f"{form} button[type=submit]")
        row = "#config-targets tr[data-target=pacs]"
        await page.wait_for_selector(row)
        assert await page.inner_text(f"{row} td.kind") == "DIMSE"
        assert await page.inner_text(f"{row} td.address") == f"PACS@127.0.0.1:{storescp.port}"
        assert await page.inner_text(f"{row} td.version") == "1"

        await page.click(f"{row} button:text('Test')")
        await page.wait_for_selector(f"{row} td.echo.ok", timeout=30_000)
        assert "answered C-ECHO with Success" in await page.inner_text(f"{row} td.echo")

        rule = "#rule-form"
        await page.fill(f"{rule} [name=name]", "to-pacs")
        await page.check(f"{rule} [name=targets][value=pacs]")
        await page.fill(f"{rule} [name=modality]", "MR")
        await page.click(f"{rule} button:text('Dry run')")
        stored = f"#dry-run tr[data-sop='{ct_uid}']"
        await page.wait_for_selector(f"{stored} td.sends:text('nowhere')")  # the CT is no MR
        await page.fill(f"{rule} [name=modality]", "")
        await page.click(f"{rule} button:text('Dry run')")
        await page.wait_for_selector(f"{stored} td.sends.some:text('pacs')")
        assert "would have sent 1: pacs 1" in await page.inner_text("#dry-run [data-summary]")

        await page.click(f"{rule} button[type=submit]")
        saved = "#config-rules tr[data-rule=to-pacs]"
        await page.wait_for_selector(saved)
        assert await page.inner_text(f"{saved} td.match") == "everything"
        assert await page.inner_text(f"{saved} td.targets") == "pacs"

        await page.click(f"{saved} button:text('Edit')")
        assert await page.inner_text(f"{rule} h3") == "Edit rule to-pacs (version 1)"
        assert await page.is_checked(f"{rule} [name=targets][value=pacs]")
        await page.fill(f"{rule} [name=modality]", "MR")
        await page.click(f"{rule} button[type=submit]")
        await page.wait_for_selector(f"{saved} td.version:text('2')")
        assert await page.inner_text(f"{saved} td.match") == "modality MR"
        assert await page.inner_text(f"{rule} h3") == "Add a rule"

        await ingest_all(hub.archive, [MR])
        assert await arrived(storescp, mr_uid) == dataset_sha256(MR)
        await page.wait_for_selector(
            f"#tasks tr:has(td.uid:text('{mr_uid}')) td.state.done", timeout=30_000
        )
        assert ct_uid not in storescp.received()  # the dry run queued nothing
        assert await page.locator("#tasks tbody tr").count() == 1
        assert await page.is_hidden("#error")
        assert console.errors == []


async def test_a_stale_edit_is_refused_and_asks_for_a_reload(tmp_path: Path):
    target = {"type": "dimse", "host": "127.0.0.1", "port": free_port(), "called_ae": "PACS"}
    settings = Settings(
        data_dir=tmp_path / "data",
        port=free_port(),
        **sections(forward=forwarding({"pacs": target})),
    )
    async with running_hub(settings) as hub, signed_in_page(hub, "/forwarding") as (page, console):
        row = "#config-targets tr[data-target=pacs]"
        await page.wait_for_selector(f"{row} td.version:text('1')")
        await page.click(f"{row} button:text('Edit')")
        form = "#target-form"
        assert await page.inner_text(f"{form} h3") == "Edit target pacs (version 1)"

        elsewhere = {**target, "port": 11112, "version": 1}  # meanwhile, another administrator
        async with (
            hub.session() as http,
            http.put(f"{hub.url}/api/forward/targets/pacs", json=elsewhere) as response,
        ):
            assert response.status == 200, await response.text()

        await page.fill(f"{form} [name=port]", "104")
        await page.click(f"{form} button[type=submit]")
        await page.wait_for_selector("#error:not([hidden])")
        message = await page.inner_text("#error")
        assert "changed elsewhere since the page read it" in message
        assert "Press Reload" in message
        assert "version 2, not 1" in message
        assert (await _target(hub) or {}).get("port") == 11112  # the other change stands

        await page.click("#editor-reload")
        await page.wait_for_selector(f"{form} h3:text('version 2')")
        assert await page.input_value(f"{form} [name=port]") == "11112"
        await page.fill(f"{form} [name=port]", "104")
        await page.click(f"{form} button[type=submit]")
        await page.wait_for_selector(f"{row} td.version:text('3')")
        await page.wait_for_selector("#error", state="hidden")
        assert (await _target(hub) or {}).get("port") == 104

        asked = _accept_dialogs(page)
        await page.click(f"{row} button:text('Delete')")
        await page.wait_for_selector(row, state="detached")
        assert asked == ["Remove the target pacs?"]
        assert await _target(hub) is None
        (refused,) = console.errors  # the browser reports the refused call itself
        assert "409" in refused and "/api/forward/targets/pacs" in refused


async def _target(hub: HubServer) -> dict | None:
    async with hub.session() as http, http.get(f"{hub.url}/api/forward/targets") as response:
        listed = await response.json()
    return next((t for t in listed["targets"] if t["name"] == "pacs"), None)


def _accept_dialogs(page: Page) -> list[str]:
    """Accept every confirm() of the page; the questions asked, in order."""
    asked: list[str] = []

    async def accept(dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return asked


async def test_an_account_that_only_watches_the_queue_sees_no_editor(editable_hub: HubServer):
    from hub.security.accounts import issue_token

    hub = editable_hub
    _, secret = await issue_token(hub.archive.engine, "test-admin", scopes=["forward.read"])
    hub.admin_headers = {"Authorization": f"Bearer {secret}"}  # new_page signs in with these
    async with chromium() as browser:
        page = await new_page(browser, hub)
        await page.goto(f"{hub.url}/forwarding")
        await page.wait_for_selector("#editor[data-access=denied]", state="attached")
        await page.wait_for_function(
            "() => document.querySelector('#status').textContent.includes('No forwarding targets')"
        )
        assert await page.is_hidden("#editor")
        assert await page.is_hidden("#error")


async def test_a_dicomweb_target_is_added_and_its_test_tells_why_it_failed(
    editable_hub: HubServer,
):
    hub = editable_hub
    url = f"http://127.0.0.1:{free_port()}/dicomweb"  # nothing listens
    async with signed_in_page(hub, "/forwarding") as (page, console):
        form = "#target-form"
        await page.wait_for_selector("#editor:not([hidden])")
        assert await page.is_disabled(f"{form} button[data-test]")  # nothing saved to test yet
        await page.fill(f"{form} [name=name]", "vna")
        await page.select_option(f"{form} [name=type]", "stow")
        assert await page.is_hidden(f"{form} [name=host]")
        await page.fill(f"{form} [name=url]", url)
        await page.fill(f"{form} [name=token]", "s3cret-token")
        await page.click(f"{form} button[type=submit]")
        row = "#config-targets tr[data-target=vna]"
        await page.wait_for_selector(row)
        assert await page.inner_text(f"{row} td.kind") == "DICOMweb"
        assert await page.inner_text(f"{row} td.address") == url

        await page.click(f"{row} button:text('Edit')")
        assert await page.input_value(f"{form} [name=url]") == url
        assert await page.input_value(f"{form} [name=token]") == ""  # never shown
        await page.click(f"{form} button[data-test]")
        await page.wait_for_selector(f"{form} output.echo.failed", timeout=30_000)
        assert (await page.inner_text(f"{form} output.echo")).startswith("Failed: ")
        assert await page.inner_text(f"{row} td.echo") == await page.inner_text(
            f"{form} output.echo"
        )
        assert await page.is_hidden("#error")  # a target that does not answer is no API error
        assert console.errors == []
    config = await hub.app[FORWARDER_KEY].source.current()
    assert (config.targets["vna"].url, config.targets["vna"].token) == (url, "s3cret-token")
