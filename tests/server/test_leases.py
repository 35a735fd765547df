"""Leases for single-holder duties: one holder at a time, a fence that rises at every new hold,
and a stale holder's late work refused; on SQLite, and on PostgreSQL when the run has one."""

from __future__ import annotations

import asyncio

import pytest
from leasetest import Clock, engines, index_url

from hub.serve.leases import LeaderLease, LeaseKeeper, LeaseLost, holding
from hub.serve.tables import leases

LEASE_SECONDS = 10.0


@pytest.fixture
async def url(new_database, tmp_path) -> str:
    return await index_url(new_database, tmp_path)


def lease(engine, node: str, clock: Clock, name: str = "janitor") -> LeaderLease:
    return LeaderLease(engine, name, node, LEASE_SECONDS, clock)


async def row(engine, name: str = "janitor"):
    async with engine.connect() as conn:
        return (await conn.execute(leases.select().where(leases.c.name == name))).one()


async def test_one_holds_the_other_takes_over_after_expiry_with_a_higher_fence(url) -> None:
    clock = Clock()
    async with engines(url, 2) as (one, two):
        a, b = lease(one, "node-a", clock), lease(two, "node-b", clock)
        assert await a.acquire() and a.held
        first = a.fence
        assert not await b.acquire() and b.fence is None

        clock.now += LEASE_SECONDS - 1
        assert await a.renew()
        clock.now += LEASE_SECONDS - 1  # within the renewed hold
        assert not await b.acquire()
        assert await a.acquire() and a.fence == first  # keeping a hold keeps its fence

        clock.now += LEASE_SECONDS + 1  # a stopped renewing
        assert await b.acquire()
        assert b.fence is not None and first is not None and b.fence > first
        assert (await row(one)).holder == "node-b"
        with pytest.raises(LeaseLost, match="node-b"):
            async with a.batch():
                pytest.fail("a stale holder's batch ran")
        assert not await a.renew() and a.fence is None
        assert not await a.acquire()


async def test_a_holder_whose_clock_lags_is_refused_by_the_fence(url) -> None:
    """b's clock runs ahead: b sees a's hold expired while a's own clock says it still holds.
    The index, not a's clock, decides."""
    a_clock, b_clock = Clock(), Clock()
    async with engines(url, 2) as (one, two):
        a, b = lease(one, "node-a", a_clock), lease(two, "node-b", b_clock)
        assert await a.acquire()
        b_clock.now += LEASE_SECONDS + 1
        assert await b.acquire()
        assert a.held  # by a's clock
        a.check()  # the clock check alone would let it go on
        with pytest.raises(LeaseLost):
            async with one.begin() as conn:
                await a.fenced(conn)
        async with b.batch():
            b.check()


async def test_a_restarted_node_takes_its_own_lease_at_once_and_fences_its_old_self(url) -> None:
    clock = Clock()
    async with engines(url, 2) as (one, two):
        before = lease(one, "node-a", clock)
        assert await before.acquire()
        after = lease(two, "node-a", clock)  # the same node id, a new process
        assert await after.acquire()
        assert after.fence is not None and before.fence is not None
        assert after.fence > before.fence
        with pytest.raises(LeaseLost):
            async with before.batch():
                pytest.fail("the old process's batch ran")
        async with after.batch():
            pass


async def test_a_released_lease_is_taken_at_once(url) -> None:
    clock = Clock()
    async with engines(url, 2) as (one, two):
        a, b = lease(one, "node-a", clock), lease(two, "node-b", clock)
        assert await a.acquire()
        await a.release()
        assert a.fence is None and not a.held
        assert await b.acquire()
        assert (await row(one)).holder == "node-b"


@pytest.mark.parametrize("existing", ["missing row", "expired row"])
async def test_of_concurrent_acquirers_exactly_one_wins(url, existing: str) -> None:
    clock = Clock()
    nodes = 8
    async with engines(url, nodes) as made:
        if existing == "expired row":
            old = lease(made[0], "node-old", clock, "race")
            assert await old.acquire()
            clock.now += LEASE_SECONDS + 1
        for round_ in range(3):
            racers = [lease(e, f"node-{round_}-{n}", clock, "race") for n, e in enumerate(made)]
            won = await asyncio.gather(*(r.acquire() for r in racers))
            assert won.count(True) == 1, won
            (winner,) = [r for r, w in zip(racers, won, strict=True) if w]
            assert (await row(made[0], "race")).holder == winner.node_id
            assert [r for r in racers if r.fence is not None] == [winner]
            clock.now += LEASE_SECONDS + 1  # the winner stops; the next round races again


async def test_no_takeover_while_a_batch_is_in_progress(url) -> None:
    """On PostgreSQL a batch keeps the row locked: a node that finds the hold expired cannot take
    the lease until the batch ends (it gives up after a short wait instead of blocking)."""
    if not url.startswith("postgresql"):
        pytest.skip("the row lock of a batch is PostgreSQL's (FOR UPDATE)")
    clock = Clock()
    async with engines(url, 2) as (one, two):
        a, b = lease(one, "node-a", clock), lease(two, "node-b", clock)
        assert await a.acquire()
        async with a.batch():
            assert await a.renew()  # the holder's renewals go on during its batch
            clock.now += LEASE_SECONDS + 1
            assert not await b.acquire()
            assert (await row(two)).holder == "node-a"
        assert await b.acquire()
        with pytest.raises(LeaseLost):
            async with a.batch():
                pass


async def test_keepers_hand_the_duty_over(url) -> None:
    """Real clocks: the first keeper holds and runs its duty; when it stops (and releases), the
    other takes the lease at its next heartbeat and runs its own."""
    async with engines(url, 2) as (one, two):
        ran: list[str] = []

        def duty(node: str):
            async def run() -> None:
                ran.append(node)
                await asyncio.Event().wait()  # a duty runs until its hold ends

            return run

        a = LeaseKeeper(LeaderLease(one, "janitor", "node-a", 2.0), 0.1, duty("node-a"))
        b = LeaseKeeper(LeaderLease(two, "janitor", "node-b", 2.0), 0.1, duty("node-b"))
        assert await a.start()
        assert not await b.start()
        await asyncio.sleep(0.3)  # heartbeats of both: a renews, b finds it held
        assert ran == ["node-a"] and a.lease.held and not b.lease.held
        await a.stop()
        async with asyncio.timeout(30):
            while not b.lease.held or len(ran) < 2:
                await asyncio.sleep(0.05)
        assert ran == ["node-a", "node-b"]
        assert (await row(one)).holder == "node-b"
        await b.stop()
        assert (await row(one)).holder is None


async def test_a_command_holds_the_lease_for_its_block_only(url) -> None:
    async with engines(url, 2) as (one, two):
        command = LeaderLease(one, "janitor", "repair-1@node-a", LEASE_SECONDS)
        node = LeaderLease(two, "janitor", "node-a", LEASE_SECONDS)
        async with holding(command, 0.1) as held:
            assert held
            assert not await node.acquire()
        assert await node.acquire()
        async with holding(command, 0.1) as held:
            assert not held
