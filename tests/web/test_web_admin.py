"""The administration page in headless Chromium: users, tokens, the DICOM allow-list and the
audit trail changed through the page and checked through the JSON API; other accounts are told
the page is for administrators only."""

from __future__ import annotations

import aiohttp
import pytest
from hubtest import HubServer
from web_support import Console, chromium, new_page, signed_in_page

from hub.security.accounts import create_user, issue_token

pytestmark = pytest.mark.browser


async def _get(hub: HubServer, path: str):
    async with hub.session() as http, http.get(f"{hub.url}{path}") as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _signs_in(hub: HubServer, username: str, password: str) -> bool:
    async with aiohttp.ClientSession() as http:
        body = {"username": username, "password": password}
        async with http.post(f"{hub.url}/api/login", json=body) as response:
            return response.status == 200


async def test_users_are_added_shown_their_password_once_and_disabled(hub_server: HubServer):
    hub = hub_server
    async with signed_in_page(hub, "/admin") as (page, console):
        await page.wait_for_selector("#user-list tr[data-user=test-admin]")
        await page.fill("#add-user [name=username]", "nurse")
        await page.select_option("#add-user [name=role]", "clinic")
        await page.click("#add-user button[type=submit]")
        await page.wait_for_selector("#password:not([hidden])")
        assert await page.inner_text("#password [data-for]") == "nurse"
        password = await page.inner_text("#password [data-secret]")
        assert await _signs_in(hub, "nurse", password)
        row = "#user-list tr[data-user=nurse]"
        assert await page.inner_text(f"{row} td.state") == "active"

        await page.click(f"{row} button:text('Disable')")
        await page.wait_for_selector(f"{row} td.state.disabled")
        users = {u["username"]: u for u in await _get(hub, "/api/admin/users")}
        assert users["nurse"]["role"] == "clinic" and users["nurse"]["disabled"]
        assert not await _signs_in(hub, "nurse", password)

        await page.reload()
        await page.wait_for_selector(f"{row} td.state.disabled")
        assert password not in await page.content()  # shown once
        assert console.errors == []


async def test_a_token_is_shown_once_and_revoked(hub_server: HubServer):
    hub = hub_server
    async with chromium() as browser:
        page = await new_page(browser, hub)
        await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        console = Console(page)
        await page.goto(f"{hub.url}/admin")
        await page.wait_for_selector("#issue-token option[value=test-admin]", state="attached")
        await page.select_option("#issue-token [name=username]", "test-admin")
        await page.fill("#issue-token [name=days]", "2")
        await page.fill("#issue-token [name=label]", "scanner")
        await page.fill("#issue-token [name=scopes]", "dicomweb.read")
        await page.click("#issue-token button[type=submit]")
        await page.wait_for_selector("#secret:not([hidden])")
        secret = await page.inner_text("#secret [data-secret]")
        await page.click("#secret [data-copy]")
        await page.wait_for_selector("#secret [data-copied]:text('copied')")
        assert await page.evaluate("navigator.clipboard.readText()") == secret

        tokens = [t for t in await _get(hub, "/api/admin/tokens") if t["label"] == "scanner"]
        assert len(tokens) == 1 and tokens[0]["scopes"] == "dicomweb.read"
        token = tokens[0]["id"]
        row = f"#token-list tr[data-token='{token}']"
        await page.wait_for_selector(f"{row} td.state.active")
        assert secret not in await page.inner_text("#token-list")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"}) as http:
            async with http.get(f"{hub.url}/api/me") as response:
                assert (await response.json())["scopes"] == ["dicomweb.read"]

            await page.click(f"{row} button:text('Revoke')")
            await page.wait_for_selector(f"{row} td.state.revoked")
            async with http.get(f"{hub.url}/api/me") as response:
                assert response.status == 401
        await page.reload()
        await page.wait_for_selector(f"{row} td.state.revoked")
        assert secret not in await page.content()
        assert console.errors == []


async def test_an_ae_title_is_allowed_edited_and_removed(hub_server: HubServer):
    hub = hub_server
    async with signed_in_page(hub, "/admin") as (page, console):
        await page.wait_for_selector("#sections:not([hidden])")
        await page.fill("#allow-ae [name=ae_title]", "MODALITY1")
        await page.check("#allow-ae [name=services][value=store]")
        await page.check("#allow-ae [name=services][value=find]")
        await page.select_option("#allow-ae [name=role]", "integration")
        await page.fill("#allow-ae [name=address]", "10.0.0.5")
        await page.click("#allow-ae button[type=submit]")
        row = "#ae-list tr[data-ae=MODALITY1]"
        await page.wait_for_selector(row)
        assert await page.inner_text(f"{row} td.services") == "store find"
        (entry,) = await _get(hub, "/api/admin/ae")
        assert entry["services"] == ["store", "find"]
        assert entry["effective_role"] == "integration" and entry["address"] == "10.0.0.5/32"

        await page.click(f"{row} button:text('Edit')")
        assert await page.input_value("#allow-ae [name=ae_title]") == "MODALITY1"
        await page.uncheck("#allow-ae [name=services][value=store]")
        await page.click("#allow-ae button[type=submit]")
        await page.wait_for_function(
            f"""() => document.querySelector("{row} td.services")?.textContent === 'find'"""
        )
        (entry,) = await _get(hub, "/api/admin/ae")
        assert entry["services"] == ["find"] and entry["address"] == "10.0.0.5/32"

        await page.click(f"{row} button:text('Remove')")
        await page.wait_for_selector(row, state="detached")
        assert "No AE title is listed" in await page.inner_text("#ae-list")
        assert await _get(hub, "/api/admin/ae") == []
        assert console.errors == []


async def test_a_refused_ae_shows_the_reason(hub_server: HubServer):
    hub = hub_server
    async with chromium() as browser:
        page = await new_page(browser, hub)
        await page.goto(f"{hub.url}/admin")
        await page.wait_for_selector("#sections:not([hidden])")
        await page.fill("#allow-ae [name=ae_title]", "VIEWER")
        await page.check("#allow-ae [name=services][value=store]")
        await page.select_option("#allow-ae [name=role]", "pathologist")
        await page.click("#allow-ae button[type=submit]")
        await page.wait_for_selector("#error:not([hidden])")
        assert "may not use store" in await page.inner_text("#error")
        assert await _get(hub, "/api/admin/ae") == []


async def test_audit_verify_and_the_system_state(hub_server: HubServer):
    hub = hub_server
    async with signed_in_page(hub, "/admin") as (page, console):
        await page.wait_for_selector("#sections:not([hidden])")
        await page.click("#verify")
        await page.wait_for_selector("#verdict.ok")
        assert (await page.inner_text("#verdict")).startswith("Intact:")
        assert (await _get(hub, "/api/admin/audit/verify"))["ok"]
        export = page.locator("a[href='/api/admin/audit/export']")
        assert await export.count() == 1

        assert await page.inner_text("#backup td.last-backup") == "none"
        assert await page.inner_text("#backup td.stale") == "no"
        assert "No forwarding targets" in await page.inner_text("#queue")
        assert console.errors == []


async def test_other_accounts_are_told_the_page_is_for_administrators(hub_server: HubServer):
    hub = hub_server
    await create_user(hub.archive.engine, "clinic-a", "clinic", None)
    _, secret = await issue_token(hub.archive.engine, "clinic-a")
    hub.admin_headers = {"Authorization": f"Bearer {secret}"}  # new_page signs in with these
    async with chromium() as browser:
        page = await new_page(browser, hub)
        console = Console(page)
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        await page.goto(f"{hub.url}/admin")
        await page.wait_for_selector("#error:not([hidden])")
        assert "Administrators only" in await page.inner_text("#error")
        assert await page.locator("#sections").is_hidden()
        assert await page.locator("#user-list tbody tr").count() == 0
        await page.wait_for_selector("header.top nav[data-sections=shown]")
        assert "Admin" not in await page.locator("header.top nav a").all_inner_texts()
        assert not [url for url in asked if "/api/admin" in url or "/api/backup" in url]
        assert console.errors == []
