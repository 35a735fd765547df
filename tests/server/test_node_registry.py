"""A node writes its row in the registry at start and renews its heartbeat while it runs."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import replace

import pytest
from hubtest import running_hub
from sqlalchemy import select

from hub.app_keys import NODE_KEY
from hub.config import ClusterSettings, Settings, SettingsError
from hub.serve.registry import NodeRegistry, advertised_url
from hub.serve.tables import nodes


async def node_rows(engine) -> dict[str, dict]:
    async with engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in await conn.execute(select(nodes))}


async def test_a_restart_rewrites_the_row_and_a_beat_renews_it(archive):
    now = [1000.0]
    first = NodeRegistry(archive.engine, "node-a", 2.0, clock=lambda: now[0])
    await first.register()
    await NodeRegistry(archive.engine, "node-b", 2.0, clock=lambda: now[0]).register()

    now[0] = 1005.0
    await first.beat()
    row = (await node_rows(archive.engine))["node-a"]
    assert (row["started_at"], row["heartbeat_at"]) == (1000.0, 1005.0)
    assert (row["host"], row["pid"]) == (socket.gethostname(), os.getpid())

    now[0] = 1100.0  # the same node id starts again
    await NodeRegistry(archive.engine, "node-a", 2.0, clock=lambda: now[0]).register()
    rows = await node_rows(archive.engine)
    assert sorted(rows) == ["node-a", "node-b"]
    assert rows["node-a"]["started_at"] == rows["node-a"]["heartbeat_at"] == 1100.0
    assert rows["node-b"]["started_at"] == 1000.0


async def test_a_removed_row_is_written_again_at_the_next_beat(archive):
    registry = NodeRegistry(archive.engine, "node-a", 2.0)
    await registry.register()
    async with archive.engine.begin() as conn:
        await conn.execute(nodes.delete())
    await registry.beat()
    assert await registry.heartbeat_at() is not None


async def test_a_second_live_process_with_the_same_id_is_warned_of(archive, caplog):
    await NodeRegistry(archive.engine, "node-a", 2.0).register()
    async with archive.engine.begin() as conn:  # as another process wrote it a moment ago
        await conn.execute(nodes.update().values(pid=os.getpid() + 1))
    second = NodeRegistry(archive.engine, "node-a", 2.0)
    await second.start()
    await second.stop()
    assert "give each node its own id" in caplog.text


async def test_the_running_hub_registers_and_beats(settings):
    settings = replace(settings, cluster=ClusterSettings(node_id="node-a", heartbeat_seconds=0.05))
    async with running_hub(settings) as hub:
        registry = hub.app[NODE_KEY]
        assert registry.node == "node-a"
        first = await registry.heartbeat_at()
        deadline = time.monotonic() + 30
        while await registry.heartbeat_at() == first:
            assert time.monotonic() < deadline, "no heartbeat was written"
            await asyncio.sleep(0.05)
        row = (await node_rows(hub.archive.engine))["node-a"]
        assert row["pid"] == os.getpid() and row["heartbeat_at"] > row["started_at"]
        assert row["host"] == f"http://127.0.0.1:{settings.port}"  # where the others reach it
    stopped = await registry.heartbeat_at()
    await asyncio.sleep(0.2)
    assert await registry.heartbeat_at() == stopped  # no beats after the hub stops


def test_a_lease_shorter_than_the_heartbeat_is_refused():
    with pytest.raises(SettingsError, match="lease_seconds"):
        Settings.from_env({"TESSERA_LEASE_SECONDS": "1"})


def test_a_node_advertises_the_url_the_other_nodes_reach_it_on(settings):
    assert advertised_url(replace(settings, port=8081)) == "http://127.0.0.1:8081"
    everywhere = replace(settings, host="0.0.0.0", port=8081)
    assert advertised_url(everywhere) == f"http://{socket.gethostname()}:8081"
    given = Settings.from_env({"TESSERA_ADVERTISE_URL": "https://node-a.internal:8443/"})
    assert advertised_url(given) == "https://node-a.internal:8443"
    with pytest.raises(SettingsError, match="advertise_url"):
        Settings.from_env({"TESSERA_ADVERTISE_URL": "node-a.internal:8080"})
