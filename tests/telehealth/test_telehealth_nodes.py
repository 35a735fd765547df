"""Two ``tessera serve`` nodes on one PostgreSQL index, as behind a load balancer without sticky
sessions: the clinic starts a guidance session on node a, the specialist's calls reach node b,
which relays them (the signalling WebSocket included) to node a, where the media is."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from hubtest import HubProcess, bearer_for, two_nodes
from telehealth_support import CineTrack, Peer, cine_frames, join_session, start_session

EXTRA = json.dumps(
    {
        "cluster": {"heartbeat_seconds": 0.5, "lease_seconds": 3.0},
        "telehealth": {"ice_candidates": "loopback"},
    }
)


@pytest.fixture
def nodes(tmp_path: Path, database_url: str | None) -> Iterator[tuple[HubProcess, HubProcess]]:
    with two_nodes(tmp_path, database_url, EXTRA) as both:
        yield both


def users(data: Path) -> dict[str, dict[str, str]]:
    return {role: bearer_for(data, f"{role}-user", role) for role in ("clinic", "specialist")}


def on(node: HubProcess, headers: dict[str, dict[str, str]]) -> SimpleNamespace:
    """A node as the telehealth test helpers address a hub."""
    return SimpleNamespace(url=node.url, headers=headers)


def session_call(base: str, session: dict, token: str, auth: dict[str, str], path: str = ""):
    """Arguments of a call inside a session, on the node at ``base``."""
    url = f"{base}/api/telehealth/sessions/{session['id']}{path}"
    return url, {**auth, "X-Telehealth-Token": token}


async def test_a_specialist_reaching_another_node_guides_the_session_and_ends_it(nodes) -> None:
    a, b = nodes
    headers = await asyncio.to_thread(users, a.data)
    async with aiohttp.ClientSession() as http:
        session = await start_session(http, on(a, headers))
        joined = await join_session(http, on(b, headers), session["invite_code"])
        assert joined["id"] == session["id"]
        specialist_token = joined["specialist_token"]

        url, auth = session_call(b.url, session, specialist_token, headers["specialist"], "/ice")
        async with http.get(url, headers=auth) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Cache-Control"] == "no-store"
            assert "iceServers" in await r.json()

        clinic = Peer(a.url, session["id"], session["clinic_token"], "clinic", headers["clinic"])
        specialist = Peer(
            b.url, session["id"], specialist_token, "specialist", headers["specialist"]
        )
        try:
            await clinic.connect(CineTrack(cine_frames()))
            await specialist.connect(receive_video=True)
            await specialist.wait_video(30)
            specialist.send({"type": "capture", "action": "still"})
            stored = await specialist.next_message(
                lambda m: m["type"] == "capture" and m.get("kind") == "still" and "state" in m
            )
            assert stored["state"] == "stored", stored

            url, auth = session_call(b.url, session, specialist_token, headers["specialist"])
            async with http.get(url, headers=auth) as r:
                assert r.status == 200, await r.text()
                status = await r.json()
            assert status["connected"] == {"clinic": True, "specialist": True}
            assert [c["sop_instance_uid"] for c in status["captures"]] == [
                stored["sop_instance_uid"]
            ]
        finally:
            await specialist.close()
            await clinic.close()

        url, auth = session_call(b.url, session, session["clinic_token"], headers["clinic"])
        async with http.delete(url, headers=auth) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["state"] == "ended"
        for node in (a, b):
            url, auth = session_call(node.url, session, session["clinic_token"], headers["clinic"])
            async with http.get(url, headers=auth) as r:
                assert r.status == 404, await r.text()
                assert await r.json() == {
                    "type": "about:blank",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "no such telehealth session",
                }


async def test_a_code_no_node_knows_gets_the_same_answer_on_every_node(nodes) -> None:
    a, b = nodes
    headers = await asyncio.to_thread(users, a.data)
    async with aiohttp.ClientSession(headers=headers["specialist"]) as http:
        for node in (a, b):
            async with http.post(f"{node.url}/api/telehealth/join", json={"code": "nope"}) as r:
                assert r.status == 404
                assert await r.json() == {
                    "type": "about:blank",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "unknown or expired invite code",
                }


async def test_a_session_whose_node_was_killed_is_answered_with_the_reason(nodes) -> None:
    a, b = nodes
    headers = await asyncio.to_thread(users, a.data)
    async with aiohttp.ClientSession() as http:
        session = await start_session(http, on(a, headers))
        joined = await join_session(http, on(b, headers), session["invite_code"])
        a.proc.kill()
        await asyncio.to_thread(a.proc.wait)

        url, auth = session_call(b.url, session, joined["specialist_token"], headers["specialist"])
        async with asyncio.timeout(60):
            while True:  # until the lease runs out, node b says node a is not answering
                async with http.get(url, headers=auth) as r:
                    body = await r.json()
                    if r.status != 503:
                        break
                    assert "node-a" in body["detail"] and "not answering" in body["detail"]
                await asyncio.sleep(0.5)
        assert r.status == 410, body
        assert "node-a" in body["detail"] and "stopped" in body["detail"]

        join = f"{b.url}/api/telehealth/join"
        code = {"code": session["invite_code"]}
        async with http.post(join, json=code, headers=headers["specialist"]) as r:
            assert r.status == 410
            assert "node-a" in (await r.json())["detail"]
