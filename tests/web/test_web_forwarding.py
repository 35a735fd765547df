"""The forwarding page in headless Chromium: a PACS that is down shows up as pending tasks with
the reason, and the operator's cancel and retry buttons change the queue."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hubtest import HubServer, free_port, running_hub
from playwright.async_api import Page
from pydicom.data import get_testdata_file
from web_support import Console, chromium, ingest_all, new_page, signed_in_page

from hub.config import Settings, sections
from hub.forward.keys import FORWARDER_KEY

pytestmark = pytest.mark.browser


@pytest.fixture
async def forwarding_hub(tmp_path: Path) -> AsyncIterator[HubServer]:
    down = {"host": "127.0.0.1", "port": free_port(), "called_ae": "PACS"}  # nothing listens
    forward = {
        "targets": {"pacs": down},
        "rules": [{"target": "pacs"}],
        "retry": {"base": 60.0, "max_attempts": 5},  # one attempt within the test
        "timeouts": {"connect": 2, "acse": 2},
        "poll_interval": 0.3,
    }
    settings = Settings(data_dir=tmp_path / "data", port=free_port(), **sections(forward=forward))
    async with running_hub(settings) as hub:
        yield hub


async def _task_states(hub: HubServer) -> dict[int, str]:
    return {t.id: t.state for t in await hub.app[FORWARDER_KEY].queue.list(limit=100)}


@contextlib.asynccontextmanager
async def two_instances_queued(hub: HubServer) -> AsyncIterator[tuple[Page, Console]]:
    """The forwarding page, once two instances are stored (queued for the PACS that is down)."""
    await ingest_all(
        hub.archive, [Path(get_testdata_file(n)) for n in ("CT_small.dcm", "MR_small.dcm")]
    )
    async with signed_in_page(hub, "/forwarding") as (page, console):
        yield page, console


async def test_queue_shows_the_outage_and_takes_cancel_and_retry(forwarding_hub: HubServer):
    hub = forwarding_hub
    async with two_instances_queued(hub) as (page, console):
        # Both instances were queued for the PACS; the first attempt failed to connect.
        await page.wait_for_function(
            """() => [...document.querySelectorAll('#tasks tbody td.answer')]
                     .filter((td) => td.textContent.includes('cannot reach')).length === 2""",
            timeout=30_000,
        )
        pending = await page.inner_text("#targets tr[data-target=pacs] td.count.pending")
        assert pending == "2"

        first, second = await page.eval_on_selector_all(
            "#tasks tbody tr", "(rows) => rows.map((r) => Number(r.dataset.task))"
        )
        await page.click(f"#tasks tr[data-task='{first}'] button:text('Cancel')")
        await page.wait_for_selector(f"#tasks tr[data-task='{first}'] td.state.cancelled")
        assert (await _task_states(hub))[first] == "cancelled"
        await page.click(f"#tasks tr[data-task='{first}'] button:text('Retry')")
        await page.wait_for_function(
            f"""() => !document.querySelector("#tasks tr[data-task='{first}'] td.state.cancelled")"""
        )
        assert console.errors == []
    states = await _task_states(hub)
    assert states[first] in ("pending", "in_flight")
    assert states[second] in ("pending", "in_flight")


async def test_accounts_without_forwarding_rights_are_told_so(forwarding_hub: HubServer):
    from hub.security.accounts import create_user, issue_token

    hub = forwarding_hub
    await create_user(hub.archive.engine, "reader", "pathologist", None)
    _, secret = await issue_token(hub.archive.engine, "reader")
    hub.admin_headers = {"Authorization": f"Bearer {secret}"}  # new_page signs in with these
    async with chromium() as browser:
        page = await new_page(browser, hub)
        response = await page.goto(f"{hub.url}/forwarding")
        assert response is not None and response.status == 403
        reason = await page.inner_text("#error")
        assert "needs the forward.read permission, which reader (pathologist) lacks" in reason
        assert await page.locator("#tasks").count() == 0


async def test_load_figures_of_a_target_that_is_down(forwarding_hub: HubServer):
    """Two tasks wait for a PACS that refuses connections: arrivals without a completion,
    so ρ is infinite, M/M/1 has no finite prediction and the warning shows."""
    hub = forwarding_hub
    async with two_instances_queued(hub) as (page, console):
        row = "#metrics tr[data-target=pacs]"
        await page.wait_for_selector(f"{row} td.rho.warn")
        assert await page.inner_text(f"{row} td.lambda") == f"{2 / 300:.2f}"
        assert await page.inner_text(f"{row} td.mu") == "0.00"
        assert await page.inner_text(f"{row} td.rho") == "∞"
        assert await page.inner_text(f"{row} td.w-measured") == "–"
        assert "λ ≥ μ" in await page.inner_text(f"{row} td.w-predicted")
        assert "ρ above 0.8" in await page.inner_text(f"{row} td.warning")
        points = await page.get_attribute(f"{row} svg.load polyline.depth", "points")
        assert len(points.split()) == 30
        assert points.split()[-1].endswith(",1.0")  # two tasks queued: the top of the chart
        assert console.errors == []
