"""Two ``tessera serve`` nodes on one PostgreSQL index: a slide uploaded to node a is converted
there, and a browser on node b follows the job's progress (server-sent events) to its end."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from hubtest import HubProcess, bearer_for, two_nodes
from test_jobs_uploads import corpus_file

CLUSTER = json.dumps({"cluster": {"heartbeat_seconds": 0.5, "lease_seconds": 3.0}})


@pytest.fixture
def nodes(tmp_path: Path, database_url: str | None) -> Iterator[tuple[HubProcess, HubProcess]]:
    with two_nodes(tmp_path, database_url, CLUSTER) as both:
        yield both


async def upload_slide(session: aiohttp.ClientSession, url: str, path: Path) -> dict:
    """Upload ``path`` to the node at ``url`` in chunks and complete it; the job it started."""
    data = await asyncio.to_thread(path.read_bytes)
    async with session.post(
        f"{url}/api/uploads", json={"filename": path.name, "size": len(data)}
    ) as resp:
        assert resp.status == 201, await resp.text()
        created = await resp.json()
    step = created["chunk_size"]
    for offset in range(0, len(data), step):
        chunk = data[offset : offset + step]
        async with session.put(
            f"{url}/api/uploads/{created['id']}?offset={offset}", data=chunk
        ) as r:
            assert r.status == 200, await r.text()
    async with session.post(f"{url}/api/uploads/{created['id']}/complete") as resp:
        assert resp.status == 202, await resp.text()
        return (await resp.json())["job"]


async def follow(session: aiohttp.ClientSession, url: str, job_id: str) -> list[dict]:
    """The job's server-sent events from the node at ``url``, until that node ends the stream."""
    events = []
    async with session.get(f"{url}/api/jobs/{job_id}/events") as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for line in resp.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
    return events


async def test_a_job_on_one_node_is_followed_to_its_end_from_another(nodes):
    a, b = nodes
    auth = await asyncio.to_thread(bearer_for, a.data, "nodes-admin", "admin")
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(headers=auth, timeout=timeout) as session:
        job = await upload_slide(session, a.url, corpus_file("wsi/CMU-1-Small-Region.svs"))
        assert job["node"] == "node-a"
        events = await follow(session, b.url, job["id"])

        final = events[-1]
        assert final["status"] == "done" and final["finished"], final
        assert final["percent"] == 100.0
        assert final["frames_total"] > 0 and final["frames_done"] == final["frames_total"]
        assert final["instances"] >= 2 and final["node"] == "node-a"
        assert all(e["node"] == "node-a" and e["id"] == job["id"] for e in events)
        percents = [e["percent"] for e in events]
        assert percents == sorted(percents)
        assert [e for e in events if e["finished"]] == [final]
        # Node b lists and reports the job as node a wrote it.
        async with session.get(f"{b.url}/api/jobs/{job['id']}") as resp:
            assert {**(await resp.json())} == final
        async with session.get(f"{b.url}/api/jobs") as resp:
            listed = {j["id"]: j for j in (await resp.json())["jobs"]}
        assert listed[job["id"]] == final


async def test_a_job_of_a_killed_node_is_failed_by_the_other_with_the_reason(nodes):
    a, b = nodes
    auth = await asyncio.to_thread(bearer_for, a.data, "nodes-admin", "admin")
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(headers=auth, timeout=timeout) as session:
        job = await upload_slide(session, a.url, corpus_file("wsi/test3-DAPI-2.ndpi"))
        # Killed the moment the job is accepted: its worker process is still starting.
        a.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(a.proc.wait)
        final = (await follow(session, b.url, job["id"]))[-1]
    assert final["status"] == "failed", final
    assert final["error"].startswith(
        "interrupted: node node-a stopped while the job was running (no heartbeat for 3 s); its "
        "upload is kept on that node, so no other node can resume it"
    ), final["error"]
    assert final["node"] == "node-a" and final["finished_at"] is not None
