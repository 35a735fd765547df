"""The telehealth settings kept in the index: changed through the API and the command line while
the hub runs, checked, versioned and audited, and used by the next session started, here with a
real coturn relay named only after the hub started."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from coturn_support import available, relay_settings, running_coturn
from sqlalchemy import select
from telehealth_support import WORKLIST_REQUEST, running_hub, start_session, user_headers
from test_telehealth_turn import gathers_relay, ice_for

from hub.security.audit_trail import _logs
from hub.security.tables import audit_log

URL = "/api/admin/telehealth"


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kwargs) -> tuple[int, dict]:
    async with http.request(method, url, **kwargs) as answer:
        return answer.status, await answer.json(content_type=None)


async def _audited(archive, action: str) -> list[dict]:
    await _logs[archive.engine].flush()
    async with archive.engine.connect() as conn:
        rows = await conn.execute(select(audit_log).where(audit_log.c.action == action))
        return [json.loads(row.detail) for row in rows]


@pytest.mark.skipif(not available(), reason="coturn (turnserver) is not installed")
async def test_a_relay_named_while_the_hub_runs_serves_the_next_session(tmp_path: Path) -> None:
    async with (
        running_coturn(tmp_path / "turn") as turn,
        running_hub(tmp_path / "data") as hub,
        aiohttp.ClientSession() as http,
    ):
        admin = await user_headers(hub.archive, "admin")
        status, before = await _call(http, "GET", hub.url + URL, headers=admin)
        assert status == 200, before
        assert (before["version"], before["turn_urls"], before["turn_secret_set"]) == (1, [], False)
        first = await start_session(http, hub)
        assert (await ice_for(http, hub, first, "clinic"))["iceServers"] == []

        change = {**relay_settings(turn, "udp"), "version": before["version"]}
        status, after = await _call(http, "PUT", hub.url + URL, json=change, headers=admin)
        assert status == 200, after
        assert after["version"] == 2 and after["turn_secret_set"] is True
        assert turn.secret not in json.dumps(after)

        ice = await ice_for(http, hub, await start_session(http, hub), "clinic")
        assert ice["iceTransportPolicy"] == "relay"
        assert await gathers_relay(ice["iceServers"])  # coturn grants the minted credential
        assert (await ice_for(http, hub, first, "clinic"))["iceServers"] == []  # kept its own

        stale = {"max_sessions": 5, "version": before["version"]}
        status, refused = await _call(http, "PUT", hub.url + URL, json=stale, headers=admin)
        assert status == 409 and "reload" in refused["detail"], refused

        (record,) = await _audited(hub.archive, "admin.telehealth.save")
        assert record["old"]["turn_urls"] == [] and record["new"]["turn_urls"] == [turn.url("udp")]
        assert record["new"]["turn_secret_set"] is True
        assert turn.secret not in json.dumps(record)


async def test_values_that_would_not_work_are_refused_with_the_reason(tmp_path: Path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        admin = await user_headers(hub.archive, "admin")
        for body, reason in [
            ({"jpeg_quality": 10}, "$.jpeg_quality"),
            ({"ice_transport_policy": "relay"}, "needs turn_urls"),
            ({"turn_urls": ["turn:127.0.0.1:3478"]}, "need turn_secret"),
            ({"stun_urls": ["http://example.org"]}, "is not a stun: or stuns: URL"),
            ({"max_sessions": "many"}, "$.max_sessions"),
            ({"colour": "blue"}, "colour"),
        ]:
            status, answer = await _call(http, "PUT", hub.url + URL, json=body, headers=admin)
            assert status == 400 and reason in answer["detail"], (body, answer)
        status, kept = await _call(http, "GET", hub.url + URL, headers=admin)
        assert (status, kept["version"], kept["jpeg_quality"]) == (200, 1, 90)
        assert await _audited(hub.archive, "admin.telehealth.save") == []

        clinic = hub.headers["clinic"]
        status, _ = await _call(
            http, "PUT", hub.url + URL, json={"max_sessions": 1}, headers=clinic
        )
        assert status == 403


async def _tessera(
    data: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The command, run in a thread: the hub under test shares this event loop, and a write
    it has in flight must be able to commit while the command waits for the index."""
    command = [
        sys.executable,
        "-m",
        "hub.cli",
        "telehealth",
        "settings",
        *args,
        "--data",
        str(data),
    ]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120, env=env
    )


async def test_the_command_line_changes_what_the_running_hub_uses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_hub(data) as hub, aiohttp.ClientSession() as http:
        done = await _tessera(data, "--max-sessions", "1", "--max-clip-seconds", "20", "--json")
        assert done.returncode == 0, done.stderr
        shown = json.loads(done.stdout)
        assert (shown["max_sessions"], shown["max_clip_seconds"]) == (1, 20.0)

        await start_session(http, hub)
        url = f"{hub.url}/api/telehealth/sessions"
        async with http.post(url, json=WORKLIST_REQUEST, headers=hub.headers["clinic"]) as second:
            assert second.status == 503, await second.text()

        refused = await _tessera(data, "--turn-secret-env", "TESSERA_NOT_SET")
        assert refused.returncode == 2 and "TESSERA_NOT_SET is not set" in refused.stderr
        refused = await _tessera(data, "--jpeg-quality", "101")
        assert refused.returncode == 1 and "jpeg_quality" in refused.stderr
