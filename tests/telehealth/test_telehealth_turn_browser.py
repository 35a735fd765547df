"""Both pages in headless Chromium, relay-only, complete a session through a real coturn; with
credentials the relay refuses, the page says it could not reach the relay and keeps retrying."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from browser_support import (
    CHROMIUM,
    CONNECTED,
    SCHEDULED_STEP,
    chromium_args,
    logged_in,
    until,
    watch,
    write_y4m,
)
from coturn_support import available, relay_settings, running_coturn, selected_pair
from telehealth_support import running_hub

from hub.worklist.model import NewItem, create
from telehealth.routes import REGISTRY_KEY

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
    pytest.mark.skipif(not available(), reason="coturn (turnserver) is not installed"),
]
VIDEO_PLAYING = (
    "() => { const v = document.querySelector('#remote');"
    " return v.videoWidth > 0 && v.currentTime > 1; }"
)
STATUS = "() => document.querySelector('#status').textContent"
LINK_MEASURED = (
    "() => { const d = document.querySelector('#link').dataset;"
    " return d.rtt !== '' && d.loss !== '' && Number(d.fps) > 0; }"
)
LINK = "() => ({...document.querySelector('#link').dataset})"


async def _clinic_page(browser, hub):
    step = NewItem.from_json({**SCHEDULED_STEP, "clinic": "clinic-user"})
    item = await create(hub.archive.engine, step)
    page = await (await logged_in(browser, hub, "clinic")).new_page()
    await page.goto(f"{hub.url}/telehealth/clinic")
    await page.locator(f"#worklist option[value='{item.id}']").wait_for(state="attached")
    await page.select_option("#worklist", str(item.id))
    await page.click("#start button[type=submit]")
    await page.locator("#invite").wait_for()
    return page


def _candidate_types(sdp: str) -> set[str]:
    return {
        line.split(" typ ")[1].split()[0]
        for line in sdp.splitlines()
        if line.startswith("a=candidate") and " typ " in line
    }


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_both_pages_through_the_relay(
    tmp_path: Path, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    camera = await asyncio.to_thread(write_y4m, tmp_path / "cine.y4m")
    async with running_coturn(tmp_path / "turn") as turn:
        # The hub's TURN-over-TLS client trusts the test's self-signed certificate.
        monkeypatch.setenv("SSL_CERT_FILE", str(turn.cert))
        async with (
            running_hub(tmp_path / "data", **relay_settings(turn, transport)) as hub,
            playwright_api.async_playwright() as p,
        ):
            # Chromium trusts the test's TURN certificate by its key (it has no CA flag).
            spki = f"--ignore-certificate-errors-spki-list={turn.spki_sha256}"
            args = [*chromium_args(camera), spki]
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                problems: list[str] = []
                clinic = await _clinic_page(browser, hub)
                watch(clinic, problems)
                await until(clinic, CONNECTED)
                specialist = await (await logged_in(browser, hub, "specialist")).new_page()
                watch(specialist, problems)
                await specialist.goto(await clinic.locator("#invite").get_attribute("href"))
                await until(specialist, VIDEO_PLAYING)

                # Both pages show the link's quality, measured through the relay.
                for page in (clinic, specialist):
                    await until(page, LINK_MEASURED)
                    link = await page.evaluate(LINK)
                    assert int(link["rtt"]) >= 0 and 0 <= float(link["loss"]) <= 100, link

                live = hub.app[REGISTRY_KEY].get(clinic.url.split("session=")[1])
                for peer in live.peers.values():
                    # The pages offered relayed candidates only, and ICE chose relay to relay.
                    assert _candidate_types(peer.pc.remoteDescription.sdp) == {"relay"}
                    assert selected_pair(peer.pc) == ("relay", "relay")
                assert problems == []
            finally:
                await browser.close()


async def test_a_refused_credential_shows_on_the_page(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    camera = await asyncio.to_thread(write_y4m, tmp_path / "cine.y4m")
    async with (
        running_coturn(tmp_path / "turn") as turn,
        # The hub mints with a secret the relay does not share: every credential is refused.
        running_hub(tmp_path / "data", **relay_settings(turn, "udp", secret="wrong")) as hub,
        playwright_api.async_playwright() as p,
    ):
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(camera))
        try:
            clinic = await _clinic_page(browser, hub)
            await until(clinic, f"() => ({STATUS})().includes('could not reach the relay')")
            status = await clinic.evaluate(STATUS)
            assert "401" in status and status.endswith("retrying"), status
            assert not hub.app[REGISTRY_KEY].get(clinic.url.split("session=")[1]).peers
        finally:
            await browser.close()
