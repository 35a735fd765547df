"""The tele-ultrasound settings on the administration page in headless Chromium: a TURN relay
named and made the only way to connect, the secret never shown again, and a stale save refused
with a request to reload."""

from __future__ import annotations

import pytest
from hubtest import HubServer
from web_support import signed_in_page

pytestmark = pytest.mark.browser

FORM = "#telehealth-settings"


async def _settings(hub: HubServer) -> dict:
    async with hub.session() as http, http.get(f"{hub.url}/api/admin/telehealth") as answer:
        assert answer.status == 200, await answer.text()
        return await answer.json()


async def test_a_relay_is_named_on_the_page_and_its_secret_kept_hidden(hub_server: HubServer):
    hub = hub_server
    async with signed_in_page(hub, "/admin") as (page, console):
        await page.wait_for_selector("#telehealth-state:text('Version 1')")
        assert "from the settings file" in await page.inner_text("#telehealth-state")
        await page.fill(f"{FORM} [name=turn_urls]", "turn:127.0.0.1:3478?transport=udp")
        await page.fill(f"{FORM} [name=turn_secret]", "a shared secret")
        await page.select_option(f"{FORM} [name=ice_transport_policy]", "relay")
        await page.fill(f"{FORM} [name=max_sessions]", "12")
        await page.click(f"{FORM} button[type=submit]")
        await page.wait_for_selector("#telehealth-state:text('Version 2')")

        saved = await _settings(hub)
        assert saved["turn_urls"] == ["turn:127.0.0.1:3478?transport=udp"]
        assert (saved["ice_transport_policy"], saved["max_sessions"]) == ("relay", 12)
        assert saved["turn_secret_set"] and "a shared secret" not in str(saved)
        assert await page.input_value(f"{FORM} [name=turn_secret]") == ""
        assert await page.get_attribute(f"{FORM} [name=turn_secret]", "placeholder") == (
            "set (unchanged)"
        )
        assert await page.is_hidden("#error")
        assert console.errors == []


async def test_a_save_over_a_change_made_elsewhere_asks_for_a_reload(hub_server: HubServer):
    hub = hub_server
    async with signed_in_page(hub, "/admin") as (page, console):
        await page.wait_for_selector("#telehealth-state:text('Version 1')")
        async with hub.session() as http:
            body = {"jpeg_quality": 80, "version": 1}
            async with http.put(f"{hub.url}/api/admin/telehealth", json=body) as answer:
                assert answer.status == 200, await answer.text()

        await page.fill(f"{FORM} [name=max_sessions]", "3")
        await page.click(f"{FORM} button[type=submit]")
        await page.wait_for_selector("#error:not([hidden])")
        assert "reload and retry" in await page.inner_text("#error")
        await page.wait_for_selector("#telehealth-state:text('Version 2')")  # shown again
        assert await page.input_value(f"{FORM} [name=jpeg_quality]") == "80"
        assert (await _settings(hub))["max_sessions"] == 100  # the refused save changed nothing
        # The refused save is the browser's one failed request; nothing else went wrong.
        assert len(console.errors) == 1 and "409" in console.errors[0], console.errors
