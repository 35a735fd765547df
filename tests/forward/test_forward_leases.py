"""Several nodes share one forward queue: a claim is a lease, held by one node until it runs out.

Each node is a ForwardQueue with its own node id and its own engine (its own connections) on the
test's index: SQLite, or PostgreSQL under tests/with_postgres.sh.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import select

from hub.archive.index import make_engine
from hub.forward.config import RetryPolicy
from hub.forward.outcome import Outcome
from hub.forward.queue import ForwardQueue, enqueue
from hub.forward.tables import forward_tasks

LEASE = 10.0
POLICY = RetryPolicy()


class Clock:
    """Time as the test sets it, shared by the nodes of a test."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def nodes(archive) -> AsyncIterator[Callable[..., ForwardQueue]]:
    """Makes nodes on the archive's index, each with an engine of its own."""
    engines = []

    def make(node: str, clock: Callable[[], float] | None = None) -> ForwardQueue:
        engine = make_engine(archive.settings.db_url)
        engines.append(engine)
        return ForwardQueue(engine, clock or Clock(), node=node, lease_seconds=LEASE)

    yield make
    for engine in engines:
        await engine.dispose()


async def queue_tasks(archive, targets: list[str], per_target: int, now: float) -> list[int]:
    async with archive.engine.begin() as conn:
        for n in range(per_target):
            instance = {
                "sop_uid": f"1.2.826.0.1.3680043.10.1.{n}",
                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
                "study_uid": "1.2.826.0.1.3680043.10.2",
                "series_uid": "1.2.826.0.1.3680043.10.3",
                "modality": "OT",
                "sha256": f"{n:064x}",
            }
            await enqueue(conn, instance, [("all", t) for t in targets], now)
        return list((await conn.scalars(select(forward_tasks.c.id))).all())


async def rows(archive) -> dict[int, dict]:
    async with archive.engine.connect() as conn:
        result = await conn.execute(select(forward_tasks))
        return {r.id: dict(r._mapping) for r in result}


async def test_two_nodes_sending_at_once_never_claim_the_same_task(archive, nodes):
    targets = ["pacs", "vna", "ai"]
    ids = await queue_tasks(archive, targets, per_target=15, now=0.0)
    a, b = nodes("node-a", time.time), nodes("node-b", time.time)
    claimed: dict[str, list[int]] = {"node-a": [], "node-b": []}
    others_in_flight: list[int] = []

    async def send_everything(node: ForwardQueue, target: str) -> None:
        """One node's turns for one target, as its worker takes them, until none is due."""
        idle_turns = 0
        while idle_turns < 20:
            tasks = await node.claim(target, 4)
            if not tasks:
                idle_turns += 1
                await asyncio.sleep(0.01)
                continue
            idle_turns = 0
            claimed[node.node].extend(t.id for t in tasks)
            others_in_flight.extend(await in_flight_of_others(node, target))
            await asyncio.sleep(0)  # the other node runs while this one sends
            for task in tasks:
                assert await node.finish(task, Outcome.done(), POLICY) == "done"

    await asyncio.gather(*(send_everything(n, t) for n in (a, b) for t in targets))

    both = claimed["node-a"] + claimed["node-b"]
    assert sorted(both) == sorted(ids)  # every task claimed, none twice
    assert not set(claimed["node-a"]) & set(claimed["node-b"])
    assert others_in_flight == []  # one batch per target in flight, across the nodes
    assert {r["state"] for r in (await rows(archive)).values()} == {"done"}


async def in_flight_of_others(node: ForwardQueue, target: str) -> list[int]:
    async with node.engine.connect() as conn:
        found = await conn.scalars(
            select(forward_tasks.c.id).where(
                forward_tasks.c.target == target,
                forward_tasks.c.state == "in_flight",
                forward_tasks.c.lease_owner != node.node,
            )
        )
        return list(found.all())


async def test_an_expired_lease_is_requeued_a_renewed_one_is_not(archive, nodes):
    clock = Clock()
    await queue_tasks(archive, ["pacs", "vna"], per_target=2, now=clock.now)
    a, b = nodes("node-a", clock), nodes("node-b", clock)
    renewed = await a.claim("pacs", 8)
    lapsing = await a.claim("vna", 8)
    assert {t.lease_owner for t in renewed + lapsing} == {"node-a"}

    clock.now += LEASE - 1
    assert await a.renew(t.id for t in renewed) == len(renewed)
    assert await b.reap_expired() == 0  # both still live
    assert await b.claim("pacs", 8) == [] and await b.claim("vna", 8) == []

    clock.now += 2  # past the first lease, within the renewed one
    assert await b.reap_expired() == len(lapsing)
    state = await rows(archive)
    for task in renewed:
        assert state[task.id]["state"] == "in_flight"
        assert state[task.id]["lease_owner"] == "node-a"
    for task in lapsing:
        assert state[task.id]["state"] == "pending"
        assert state[task.id]["lease_owner"] is None
        assert state[task.id]["attempts"] == 0  # an interrupted send is not charged

    taken = await b.claim("vna", 8)
    assert sorted(t.id for t in taken) == sorted(t.id for t in lapsing)
    assert await b.claim("pacs", 8) == []  # node-a is still sending to pacs


async def test_finish_from_a_node_that_lost_its_lease_changes_nothing(archive, nodes):
    clock = Clock()
    await queue_tasks(archive, ["pacs"], per_target=2, now=clock.now)
    a, b = nodes("node-a", clock), nodes("node-b", clock)
    lost = await a.claim("pacs", 8)
    clock.now += LEASE + 1  # node-a stalled without renewing
    await b.reap_expired()
    taken = await b.claim("pacs", 8)
    assert sorted(t.id for t in taken) == sorted(t.id for t in lost)
    before = await rows(archive)

    for task, outcome in zip(lost, [Outcome.done(), Outcome.dead("refused")], strict=True):
        assert await a.finish(task, outcome, POLICY) is None
    assert await a.renew(t.id for t in lost) == 0
    assert await rows(archive) == before  # still node-b's, in flight, uncharged

    for task in taken:
        assert await b.finish(task, Outcome.done(), POLICY) == "done"
    after = await rows(archive)
    assert {r["state"] for r in after.values()} == {"done"}
    assert {r["lease_owner"] for r in after.values()} == {None}


async def test_a_restarted_node_requeues_only_its_own_tasks(archive, nodes):
    clock = Clock()
    await queue_tasks(archive, ["pacs", "vna"], per_target=3, now=clock.now)
    a, b = nodes("node-a", clock), nodes("node-b", clock)
    own = await a.claim("pacs", 8)
    others = await b.claim("vna", 8)
    assert own and others

    restarted = nodes("node-a", clock)  # the same id, as a node keeps it across restarts
    assert await restarted.requeue_own() == len(own)

    state = await rows(archive)
    assert {state[t.id]["state"] for t in own} == {"pending"}
    assert {(state[t.id]["state"], state[t.id]["lease_owner"]) for t in others} == {
        ("in_flight", "node-b")
    }
    again = await restarted.claim("pacs", 8)  # due at once, not after the lease
    assert sorted(t.id for t in again) == sorted(t.id for t in own)


async def test_a_queue_without_a_node_id_cannot_claim(archive):
    with pytest.raises(RuntimeError, match="no node id"):
        await ForwardQueue(archive.engine).claim("pacs", 1)
