"""Which node holds a live session, as the index's ``leases`` and ``nodes`` rows say: a live
holder is named with its URL, a stopped one without, an ended session not at all."""

from __future__ import annotations

from sqlalchemy import func, select

from hub.config import ClusterSettings
from hub.serve.registry import NodeRegistry
from hub.serve.tables import leases
from telehealth.rooms import JOIN, KEEP_STOPPED_SECONDS, ROOM, Holder, Rooms

CLUSTER = ClusterSettings(heartbeat_seconds=1.0, lease_seconds=5.0)


async def test_a_holder_is_named_while_it_lives_and_said_to_have_stopped_after(archive) -> None:
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    engine = archive.engine
    a = NodeRegistry(engine, "node-a", 1.0, clock=clock, address="http://node-a:8080")
    await a.register()
    on_a, on_b = (Rooms(engine, node, CLUSTER, clock) for node in ("node-a", "node-b"))

    await on_a.claim("S1", "CODE1")
    held = Holder("node-a", "http://node-a:8080")
    assert await on_b.find(ROOM + "S1") == held
    assert await on_b.find(JOIN + "CODE1") == held
    assert await on_b.find(ROOM + "S2") is None

    now[0] += 4.0  # renewed, and the node beat: still alive past the first hold
    await on_a.renew()
    await a.beat()
    now[0] += 4.0
    assert await on_b.find(ROOM + "S1") == held
    # The holding node itself knows no such session (it held it before a restart): stopped.
    assert await on_a.find(ROOM + "S1") == Holder("node-a", None)

    now[0] += CLUSTER.lease_seconds  # neither renewed nor beaten since: node a stopped
    assert await on_b.find(ROOM + "S1") == Holder("node-a", None)

    await on_b.claim("S2", "CODE2")  # a new session keeps the stopped node's rows a while
    assert await on_b.find(JOIN + "CODE1") == Holder("node-a", None)
    now[0] += KEEP_STOPPED_SECONDS + 10
    await on_b.renew()
    await on_b.claim("S3", "CODE3")  # ... and then removes them
    assert await on_b.find(ROOM + "S1") is None


async def test_an_ended_session_is_nobody_s_and_its_rows_go(archive) -> None:
    engine = archive.engine
    rooms = Rooms(engine, "node-a", CLUSTER)
    await rooms.claim("S1", "CODE1")
    await rooms.release("S1")
    assert await rooms.find(ROOM + "S1") is None
    assert await rooms.find(JOIN + "CODE1") is None
    await rooms.claim("S2", "CODE2")
    async with engine.connect() as conn:
        names = set(await conn.scalars(select(leases.c.name)))
        assert await conn.scalar(select(func.count()).select_from(leases)) == 2
    assert names == {ROOM + "S2", JOIN + "CODE2"}
