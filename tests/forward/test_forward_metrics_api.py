"""The forwarding metrics through the whole hub: the JSON for forward.read, the Prometheus text
for an administrator or a token with the admin.metrics scope alone, and clear refusals."""

from __future__ import annotations

import aiohttp
import pytest

from hub.forward.prometheus import CONTENT_TYPE
from hub.security.accounts import create_user, issue_token
from hub.security.policy import validate_scopes


async def _bearer(hub, username: str, role: str, scopes: list[str] | None = None) -> dict:
    await create_user(hub.archive.engine, username, role, None)
    _, secret = await issue_token(hub.archive.engine, username, scopes=scopes)
    return {"Authorization": f"Bearer {secret}"}


async def _get(hub, path: str, headers: dict) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(hub.url + path) as resp,
    ):
        return resp.status, await resp.text()


async def test_prometheus_text_for_an_admin_and_a_metrics_token(hub_server):
    async with hub_server.session() as admin, admin.get(f"{hub_server.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        text = await resp.text()
    assert "# TYPE tessera_forward_utilisation gauge" in text.splitlines()
    assert "tessera_forward_window_seconds 300" in text.splitlines()

    scraper = await _bearer(hub_server, "scraper", "admin", scopes=["admin.metrics"])
    status, body = await _get(hub_server, "/metrics?window=60", scraper)
    assert status == 200 and "tessera_forward_window_seconds 60" in body
    for path in ("/api/forward/tasks", "/api/forward/metrics", "/api/admin/users"):
        status, body = await _get(hub_server, path, scraper)
        assert status == 403 and "token scope lacks" in body, path


async def test_metrics_refused_without_the_permission(hub_server):
    reader = await _bearer(hub_server, "reader", "pathologist")
    status, body = await _get(hub_server, "/metrics", reader)
    assert status == 403 and "lacks admin.metrics" in body
    status, _ = await _get(hub_server, "/metrics", {})
    assert status == 401
    with pytest.raises(ValueError, match="does not have: admin.metrics"):
        validate_scopes("pathologist", ["admin.metrics"])


async def test_json_figures_and_a_bad_window(hub_server):
    async with hub_server.session() as admin:
        async with admin.get(f"{hub_server.url}/api/forward/metrics?window=120") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["window"] == 120 and body["warn_utilisation"] == 0.8
        assert body["targets"] == []  # no targets configured, nothing queued
        for bad in ("5", "abc", "86401"):
            url = f"{hub_server.url}/api/forward/metrics?window={bad}"
            async with admin.get(url) as resp:
                assert resp.status == 400
                assert "window must be an integer from 10 to 86400" in (await resp.json())["detail"]
        async with admin.get(f"{hub_server.url}/metrics?window=0") as resp:
            assert resp.status == 400
