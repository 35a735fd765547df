"""The administration page in headless Chromium: users (roles, password resets), tokens, the
DICOM allow-list and peers (tested with C-ECHO against a dcmtk storescp), the audit trail
(searched and verified) and the system's state, changed through the page and checked through the
JSON API; other accounts get a 403 page on every page for administrators."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from hubtest import HubServer, free_port
from web_support import Console, chromium, new_page, signed_in_page

from hub.security.accounts import create_user, issue_token
from hub.security.policy import decide
from hub.security.tls import make_self_signed

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


@contextlib.asynccontextmanager
async def storescp(
    folder: Path, ae: str, tls: tuple[Path, Path] | None = None
) -> AsyncIterator[int]:
    """A dcmtk storescp on a free port, as a DICOM peer to test; its port. ``tls``: (key,
    certificate): it speaks DICOM over TLS only."""
    if shutil.which("storescp") is None:
        pytest.skip("dcmtk is not installed")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    secure = ["+tls", str(tls[0]), str(tls[1]), "-ic"] if tls else []
    command = ["storescp", *secure, "-aet", ae, "-od", str(folder), str(port)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 60
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "storescp did not start listening"
                await asyncio.sleep(0.05)
        try:
            yield port
        finally:
            proc.terminate()


async def test_a_peer_is_added_tested_edited_and_removed(hub_server: HubServer, tmp_path: Path):
    hub = hub_server
    async with (
        storescp(tmp_path, "WEBPEER") as port,
        signed_in_page(hub, "/admin") as (page, console),
    ):
        await page.wait_for_selector("#peer-list tbody td:text('No peers')")
        await page.fill("#save-peer [name=ae]", "WEBPEER")
        await page.fill("#save-peer [name=host]", "127.0.0.1")
        await page.fill("#save-peer [name=port]", str(port))
        await page.click("#save-peer button[type=submit]")
        row = "#peer-list tr[data-ae=WEBPEER]"
        await page.wait_for_selector(row)
        assert await page.inner_text(f"{row} td.address") == f"127.0.0.1:{port}"
        listing = await _get(hub, "/api/admin/peers")
        assert [(p["ae"], p["port"]) for p in listing["peers"]] == [("WEBPEER", port)]

        await page.click(f"{row} button:text('C-ECHO Test')")
        await page.wait_for_selector(f"{row} td.echo.ok")
        assert "answered C-ECHO with Success" in await page.inner_text(f"{row} td.echo")

        closed = free_port()  # nothing listens there
        await page.click(f"{row} button:text('Edit')")
        assert await page.input_value("#save-peer [name=ae]") == "WEBPEER"
        await page.fill("#save-peer [name=port]", str(closed))
        await page.click("#save-peer button[type=submit]")
        await page.wait_for_selector(f"{row} td.version:text('2')")
        await page.click(f"{row} button:text('C-ECHO Test')")
        await page.wait_for_selector(f"{row} td.echo.failed")
        assert "cannot reach" in await page.inner_text(f"{row} td.echo")

        await page.click(f"{row} button:text('Remove')")
        await page.wait_for_selector(row, state="detached")
        assert (await _get(hub, "/api/admin/peers"))["peers"] == []
        assert console.errors == []


async def test_tls_towards_a_peer_is_switched_on_and_off(hub_server: HubServer, tmp_path: Path):
    hub = hub_server
    cert, key = make_self_signed(tmp_path / "tls")
    row = "#peer-list tr[data-ae=TLSPEER]"
    async with (
        storescp(tmp_path / "received", "TLSPEER", tls=(key, cert)) as port,
        signed_in_page(hub, "/admin") as (page, console),
    ):
        await page.wait_for_selector("#peer-list tbody td:text('No peers')")
        assert await page.is_hidden("#save-peer [name=ca_file]")
        await page.fill("#save-peer [name=ae]", "TLSPEER")
        await page.fill("#save-peer [name=host]", "127.0.0.1")
        await page.fill("#save-peer [name=port]", str(port))
        await page.check("#save-peer [name=tls]")
        await page.fill("#save-peer [name=ca_file]", str(cert))
        await page.click("#save-peer button[type=submit]")
        await page.wait_for_selector(f"{row} td.address:text('(TLS)')")
        await page.click(f"{row} button:text('C-ECHO Test')")
        await page.wait_for_selector(f"{row} td.echo.ok")
        assert "Success" in await page.inner_text(f"{row} td.echo")
        (peer,) = (await _get(hub, "/api/admin/peers"))["peers"]
        assert (peer["tls"]["ca_file"], peer["tls"]["verify"]) == (str(cert), True)

        await page.click(f"{row} button:text('Edit')")
        assert await page.is_checked("#save-peer [name=tls]")
        assert await page.input_value("#save-peer [name=ca_file]") == str(cert)
        await page.uncheck("#save-peer [name=tls]")
        await page.click("#save-peer button[type=submit]")
        await page.wait_for_selector(f"{row} td.version:text('2')")
        assert "(TLS)" not in await page.inner_text(f"{row} td.address")
        await page.click(f"{row} button:text('C-ECHO Test')")
        await page.wait_for_selector(f"{row} td.echo.failed")
        assert (await _get(hub, "/api/admin/peers"))["peers"][0]["tls"] is None
        assert console.errors == []


async def _allow(page, title: str, service: str, role: str) -> None:
    """Fill the allow-list form for a new entry and save it."""
    await page.fill("#allow-ae [name=ae_title]", title)
    await page.check(f"#allow-ae [name=services][value={service}]")
    await page.select_option("#allow-ae [name=role]", role)
    await page.click("#allow-ae button[type=submit]")


async def test_a_refused_ae_shows_the_reason(hub_server: HubServer):
    hub = hub_server
    async with chromium() as browser:
        page = await new_page(browser, hub)
        await page.goto(f"{hub.url}/admin")
        await page.wait_for_selector("#sections:not([hidden])")
        await _allow(page, "VIEWER", "store", "pathologist")
        await page.wait_for_selector("#error:not([hidden])")
        assert "may not use store" in await page.inner_text("#error")
        assert await _get(hub, "/api/admin/ae") == []


async def test_an_ae_changed_meanwhile_is_not_overwritten(hub_server: HubServer):
    hub = hub_server
    entry_path = "/api/admin/ae/MODALITY2"
    row = "#ae-list tr[data-ae=MODALITY2]"
    async with chromium() as browser:
        page = await new_page(browser, hub)
        await page.goto(f"{hub.url}/admin")
        await page.wait_for_selector("#sections:not([hidden])")
        await _allow(page, "MODALITY2", "find", "integration")
        await page.wait_for_selector(f"{row} td.version:text('1')")
        assert "by test-admin" in await page.inner_text(row)

        async with hub.session() as http:  # another administrator, meanwhile
            body = {"services": ["find", "get"], "role": "integration"}
            async with http.put(f"{hub.url}{entry_path}", json=body) as response:
                assert response.status == 200, await response.text()
        await page.click(f"{row} button:text('Edit')")
        await page.check("#allow-ae [name=services][value=move]")
        await page.click("#allow-ae button[type=submit]")
        await page.wait_for_selector("#error:not([hidden])")
        assert "is at version 2, not 1: reload and retry" in await page.inner_text("#error")
        (entry,) = await _get(hub, "/api/admin/ae")
        assert (entry["services"], entry["version"]) == (["find", "get"], 2)

        await page.wait_for_selector(f"{row} td.version:text('2')")  # the list as it is now
        assert await page.inner_text(f"{row} td.services") == "find get"

        await page.click(f"{row} button:text('Edit')")
        await page.check("#allow-ae [name=services][value=move]")
        await page.click("#allow-ae button[type=submit]")
        await page.wait_for_selector(f"{row} td.version:text('3')")
        (entry,) = await _get(hub, "/api/admin/ae")
        assert entry["services"] == ["find", "move", "get"]
        await page.click(f"{row} button:text('Remove')")
        await page.wait_for_selector(row, state="detached")
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


async def _stow(hub: HubServer, data: bytes) -> None:
    boundary = "tessera-admin-boundary"
    body = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
    body += f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    async with (
        hub.session() as http,
        http.post(f"{hub.url}/dicomweb/studies", data=body, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()


async def test_the_system_section_shows_the_hub_and_refreshes(hub_server: HubServer, corpus):
    hub = hub_server
    async with signed_in_page(hub, "/admin") as (page, console):
        await page.wait_for_selector("#sections:not([hidden])")
        assert await page.inner_text("#system-counts td.instances") == "0"
        assert await page.inner_text("#system-storage td.store-kind") in ("local folder", "S3")
        versions = await _get(hub, "/api/admin/system")
        assert (
            await page.inner_text("#system-versions td.pydicom") == versions["versions"]["pydicom"]
        )
        node = page.locator(f"#system-nodes tr[data-node='{versions['node']}'] td.state")
        assert await node.inner_text() == "alive"

        data = (corpus / "us" / "US-RGB-8-epicard.dcm").read_bytes()
        await _stow(hub, data)
        marker = f"a failure the administrator should see {uuid.uuid4().hex}"
        logging.getLogger("hub.archive.ingest").error(marker)
        await page.click("#system-refresh")
        await page.wait_for_selector("#system-counts td.instances:text-is('1')")
        assert await page.inner_text("#system-counts td.studies") == "1"
        stored = await page.locator("#system-counts td.bytes").get_attribute("title")
        assert stored == f"{len(data)} bytes"
        assert (await page.inner_text("#system-counts td.bytes")).endswith(("KiB", "MiB"))
        assert "free of" in await page.inner_text("#system-storage td.free-space")
        first = page.locator("#system-errors li").first
        assert marker in await first.inner_text()
        assert "hub.archive.ingest" in await first.locator(".logger").inner_text()
        assert await page.inner_text("#backup td.last-backup") == "none"
        assert console.errors == []


def _pages_beyond(app, role: str) -> list[str]:
    """The paths of the hub's pages that ``role`` may not open, from the live route table."""
    paths = []
    for resource in app.router.resources():
        name = resource.name or ""
        if name.endswith(".page") and not decide(name, role, None).allowed:
            paths.append(resource.get_info()["path"])
    return paths


async def test_a_clinic_gets_a_403_page_on_every_admin_page(hub_server: HubServer):
    hub = hub_server
    await create_user(hub.archive.engine, "clinic-a", "clinic", None)
    _, secret = await issue_token(hub.archive.engine, "clinic-a")
    hub.admin_headers = {"Authorization": f"Bearer {secret}"}  # new_page signs in with these
    paths = _pages_beyond(hub.app, "clinic")
    assert {"/admin", "/forwarding", "/dose"} <= set(paths)
    async with chromium() as browser:
        page = await new_page(browser, hub)
        console = Console(page)
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        for path in paths:
            response = await page.goto(f"{hub.url}{path}")
            assert response is not None and response.status == 403, path
            reason = await page.inner_text("#error")
            assert reason.startswith("Administrators only: this page needs the"), reason
            assert "clinic-a (clinic)" in reason
            await page.wait_for_selector("header.top nav[data-sections=shown]")
            sections = await page.locator("header.top nav a").all_inner_texts()
            assert "Worklist" in sections and "Admin" not in sections
        assert not [url for url in asked if "/api/admin" in url or "/api/backup" in url]
        # The navigation itself answers 403; nothing else on the page fails.
        assert [e for e in console.errors if "status of 403" not in e] == []
    json_only = {**hub.admin_headers, "Accept": "application/json"}
    async with (
        aiohttp.ClientSession(headers=json_only) as http,
        http.get(f"{hub.url}/admin") as answer,
    ):
        assert answer.status == 403
        assert (await answer.json())["permission"] == "admin"


async def _sign_in_times(hub: HubServer, username: str, password: str, times: int) -> None:
    for _ in range(times):
        assert await _signs_in(hub, username, password)


def _accept_dialogs(page) -> list[str]:
    """Accept every confirm() of the page; the questions asked, in order."""
    asked: list[str] = []

    async def accept(dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return asked


async def _audit_seqs(page) -> list[int]:
    rows = page.locator("#audit-list tbody tr[data-seq]")
    return [int(s) for s in await rows.evaluate_all("rows => rows.map(r => r.dataset.seq)")]


async def test_the_audit_trail_is_searched_by_user_and_action_and_paged_back(
    hub_server: HubServer,
):
    hub = hub_server
    password = "a long enough password"
    await create_user(hub.archive.engine, "nurse", "clinic", password)
    await _sign_in_times(hub, "nurse", password, 5)
    assert not await _signs_in(hub, "nurse", "not the password")
    expected = await _get(hub, "/api/admin/audit?who=nurse&action=login&limit=500")
    logins = [r["seq"] for r in expected["records"]]
    assert len(logins) == 6
    # The page's times are local: in Kolkata (UTC+05:30) here, to show they are sent as instants.
    kolkata = ZoneInfo("Asia/Kolkata")
    first = datetime.fromtimestamp(int(expected["records"][-1]["at"]), kolkata)
    local_first = first.strftime("%Y-%m-%dT%H:%M:%S")

    async with chromium() as browser:
        context = await browser.new_context(timezone_id="Asia/Kolkata")
        await context.set_extra_http_headers(hub.admin_headers)
        page = await context.new_page()
        console = Console(page)
        await page.goto(f"{hub.url}/admin")
        await page.wait_for_selector("#audit-list tbody tr[data-seq]")  # the newest records
        form = "#audit-search"
        await page.fill(f"{form} [name=who]", "nurse")
        await page.fill(f"{form} [name=action]", "login")
        await page.fill(f"{form} [name=since]", local_first)
        await page.fill(f"{form} [name=limit]", "2")
        await page.click(f"{form} button[type=submit]")
        shown, failures = [], 0
        for page_number in range(3):
            await page.wait_for_function(
                """(seq) => document.querySelector("#audit-list tbody tr")?.dataset.seq == seq""",
                arg=str(logins[2 * page_number]),
            )
            seqs = await _audit_seqs(page)
            shown += seqs
            failures += await page.locator("#audit-list td.outcome.failure").count()
            for seq in seqs:
                row = page.locator(f"#audit-list tr[data-seq='{seq}']")
                assert await row.locator("td.who").inner_text() == "nurse"
                assert await row.locator("td.action").inner_text() == "login"
            if page_number < 2:
                await page.click("#audit-older")
        assert shown == logins and failures == 1
        assert await page.locator("#audit-older").is_hidden()

        await page.click("#audit-newer")
        await page.wait_for_function(
            """(seq) => document.querySelector("#audit-list tbody tr")?.dataset.seq == seq""",
            arg=str(logins[2]),
        )
        assert await _audit_seqs(page) == logins[2:4]

        await page.fill(f"{form} [name=since]", "")
        await page.fill(f"{form} [name=until]", local_first)
        await page.click(f"{form} button[type=submit]")
        await page.wait_for_selector("#audit-list tbody td:text('No audit record matches.')")
        assert console.errors == []


async def test_a_reset_password_is_shown_once(hub_server: HubServer):
    hub = hub_server
    first = "the first long password"
    await create_user(hub.archive.engine, "nurse", "clinic", first)
    async with signed_in_page(hub, "/admin") as (page, console):
        asked = _accept_dialogs(page)
        row = "#user-list tr[data-user=nurse]"
        await page.click(f"{row} button:text('Reset password')")
        await page.wait_for_selector("#password:not([hidden])")
        assert asked == [
            "Reset the password of nurse? The current one stops working, and its sessions end."
        ]
        assert await page.inner_text("#password [data-for]") == "nurse"
        password = await page.inner_text("#password [data-secret]")
        assert len(password) >= 12
        assert not await _signs_in(hub, "nurse", first)
        assert await _signs_in(hub, "nurse", password)
        (record,) = (await _get(hub, "/api/admin/audit?action=user.password"))["records"]
        assert record["detail"]["user"] == "nurse" and password not in str(record)

        await page.reload()
        await page.wait_for_selector(row)
        assert password not in await page.content()
        assert console.errors == []


async def test_a_role_is_changed_and_the_last_administrator_kept(hub_server: HubServer):
    hub = hub_server
    await create_user(hub.archive.engine, "nurse", "clinic", None)
    async with hub.session() as http:
        url = f"{hub.url}/api/admin/users/admin/disable"  # the first-run administrator
        async with http.post(url, json={"disabled": True}) as response:
            assert response.status == 200
    async with signed_in_page(hub, "/admin") as (page, console):
        asked = _accept_dialogs(page)
        nurse = "#user-list tr[data-user=nurse] td.role select"
        await page.select_option(nurse, "pathologist")
        await page.wait_for_function(
            f"""() => document.querySelector("{nurse}")?.value === 'pathologist' &&
                      !document.querySelector("{nurse}").disabled"""
        )
        users = {u["username"]: u for u in await _get(hub, "/api/admin/users")}
        assert users["nurse"]["role"] == "pathologist"
        assert asked == ["Give nurse the role pathologist (now clinic)?"]

        own = "#user-list tr[data-user=test-admin] td.role select"
        await page.select_option(own, "clinic")
        await page.wait_for_selector("#error:not([hidden])")
        assert "last active administrator" in await page.inner_text("#error")
        await page.wait_for_function(
            f"""() => document.querySelector("{own}")?.value === 'admin'"""
        )
        users = {u["username"]: u for u in await _get(hub, "/api/admin/users")}
        assert users["test-admin"]["role"] == "admin"
        (refused,) = console.errors  # the browser reports the refused call itself
        assert "409" in refused and "/api/admin/users/test-admin/role" in refused
