"""Single-holder duties, held through a row of ``leases`` (``hub.serve.tables``) with a fence.

A duty only one node may do at a time (the blob janitor, later scheduled backup and retention)
has one row: its holder's node id, until when the hold lasts, and ``fence``, raised at every new
hold. A node takes the row when it is free, expired or its own (a restarted node need not wait
out its old hold; the fence still rises, so the old process's late work is refused), and renews
it every heartbeat while it holds it (``LeaseKeeper``). Taking is a conditional UPDATE, so of
nodes racing for an expired row exactly one wins; a missing row is inserted, and of racing
inserts the unique key lets one through.

A node that stops renewing (killed, paused, cut off from the index) loses the duty to the next
node whose heartbeat finds the row expired. Its late work is refused by the fence: a batch of
deletes runs in a transaction that first checks that this lease still holds the row at the
fence it took, unexpired (``fenced``); on PostgreSQL the row stays locked against a takeover
until the batch ends (a takeover locks the row ``FOR UPDATE`` first, and waits only briefly), so
no node takes over during a batch and a batch after a takeover is refused. The holder's own
renewals are not held up by its batches. The session of such a transaction is ended by the
server if its holder stalls inside it for a lease time (a paused node must not keep the duty
locked). On SQLite, whose index one machine holds, the check refuses a batch begun after a
takeover. On both, ``check`` before each delete stops a holder whose hold ran out during its
batch (a node paused in the middle of one).

Times are ``clock`` seconds (the wall clock): the nodes sharing an index must keep their clocks
within a small part of ``seconds`` of each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import or_, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.serve.tables import leases
from hub.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Duty = Callable[[], Awaitable[None]]

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout


class LeaseLost(RuntimeError):
    """This node does not hold the lease (any more): its guarded work must not go on."""


class LeaderLease:
    """One node's side of the lease ``name``. ``fence`` is the fence of its hold (None when it
    holds nothing); ``held`` says whether that hold is still running by this node's clock."""

    def __init__(
        self,
        engine: AsyncEngine,
        name: str,
        node_id: str,
        seconds: float,
        clock: Clock = time.time,
    ) -> None:
        self.engine, self.name, self.node_id = engine, name, node_id
        self.seconds, self.clock = seconds, clock
        self.fence: int | None = None
        self._until = 0.0  # the expiry this node last wrote

    @property
    def held(self) -> bool:
        return self.fence is not None and self.clock() < self._until

    async def acquire(self) -> bool:
        """Keep the hold, or take the row if it is free, expired or this node's; whether this
        node holds the lease now."""
        if self.fence is not None and await self.renew():
            return True
        row = leases.c
        for _ in range(2):
            now = self.clock()
            try:
                fence = await self._take(now)
            except DBAPIError as e:
                if getattr(e.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                return False  # the holder's batch has the row: it holds the lease
            if fence is not None:
                return self._hold(fence, now)
            async with self.engine.connect() as conn:
                if await conn.scalar(select(row.name).where(row.name == self.name)) is not None:
                    return False  # another node holds it
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        leases.insert().values(
                            name=self.name,
                            holder=self.node_id,
                            fence=1,
                            expires_at=now + self.seconds,
                        )
                    )
                return self._hold(1, now)
            except IntegrityError:
                continue  # another node made the row meanwhile: try to take it as above
        return False

    async def _take(self, now: float) -> int | None:
        """The conditional UPDATE that takes a free, expired or own row: its new fence, or None.
        On PostgreSQL it waits only briefly for a row a batch of the holder has locked."""
        row = leases.c
        async with self.engine.begin() as conn:
            if await self._bounded(conn):
                wait_ms = max(1, int(self.seconds * 100))
                await conn.execute(text(f"SET LOCAL lock_timeout = {wait_ms}"))
                await conn.execute(
                    select(row.name).where(row.name == self.name).with_for_update()
                )  # conflicts with the KEY SHARE lock of a batch (``fenced``), unlike an UPDATE
            return await conn.scalar(
                update(leases)
                .where(
                    row.name == self.name,
                    or_(row.holder.is_(None), row.holder == self.node_id, row.expires_at < now),
                )
                .values(holder=self.node_id, fence=row.fence + 1, expires_at=now + self.seconds)
                .returning(row.fence)
            )

    async def renew(self) -> bool:
        """Extend this node's hold; False (and nothing held) if the row moved on. A hold that
        ran out unnoticed is renewed too: no other node held the lease meanwhile, or the fence
        would have risen."""
        if self.fence is None:
            return False
        now = self.clock()
        async with self.engine.begin() as conn:
            await self._bounded(conn)
            renewed = await conn.execute(
                update(leases).where(*self._mine()).values(expires_at=now + self.seconds)
            )
        if renewed.rowcount == 1:
            self._until = now + self.seconds
            return True
        self.fence = None
        return False

    async def release(self) -> None:
        """Give the lease up now, so that another node need not wait for it to expire."""
        if self.fence is None:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(leases).where(*self._mine()).values(holder=None, expires_at=0)
            )
        self.fence = None

    async def free_from(self, gone: str) -> None:
        """End the hold of ``gone``, a holder known to have ended (killed, say), so that this
        lease need not wait for that hold to run out; its fence is passed at the next take."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(leases)
                .where(leases.c.name == self.name, leases.c.holder == gone)
                .values(holder=None, expires_at=0)
            )

    async def fenced(self, conn: AsyncConnection) -> None:
        """In ``conn``'s transaction: raise ``LeaseLost`` unless this node holds the row at its
        fence and unexpired. On PostgreSQL the row stays locked against a takeover until the
        transaction ends (``FOR KEY SHARE``: this node's own renewals still go through)."""
        query = select(leases.c.holder, leases.c.fence, leases.c.expires_at).where(
            leases.c.name == self.name
        )
        if await self._bounded(conn):
            query = query.with_for_update(read=True, key_share=True)
        row = (await conn.execute(query)).one_or_none()
        now = self.clock()
        if (
            self.fence is None
            or row is None
            or (row.holder, row.fence) != (self.node_id, self.fence)
            or row.expires_at <= now
        ):
            held_by = "nobody" if row is None or row.holder is None else row.holder
            raise LeaseLost(f"the {self.name} lease is not held here (holder {held_by})")

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[AsyncConnection]:
        """One batch of guarded work, in a transaction that passed ``fenced`` first."""
        async with self.engine.begin() as conn:
            await self.fenced(conn)
            yield conn

    def check(self) -> None:
        """Inside a batch: raise ``LeaseLost`` if the hold ran out by this node's clock."""
        if not self.held:
            raise LeaseLost(f"the {self.name} lease ran out here")

    async def _bounded(self, conn: AsyncConnection) -> bool:
        """On PostgreSQL (True): the server ends this transaction's session if this node stalls
        in it for a lease time, so that a paused node keeps no lock on the row."""
        if conn.dialect.name != "postgresql":
            return False
        stall_ms = max(1, int(self.seconds * 1000))
        await conn.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {stall_ms}"))
        return True

    def _hold(self, fence: int, now: float) -> bool:
        self.fence, self._until = fence, now + self.seconds
        return True

    def _mine(self) -> tuple:
        return (
            leases.c.name == self.name,
            leases.c.holder == self.node_id,
            leases.c.fence == self.fence,
        )


class LeaseKeeper:
    """Tries to take ``lease`` every ``heartbeat`` and renews it while held; runs ``duty`` in a
    task of its own from each new hold, and cancels it when the hold is lost. ``stop`` ends the
    duty and releases the lease."""

    def __init__(self, lease: LeaderLease, heartbeat: float, duty: Duty) -> None:
        self.lease, self.heartbeat, self.duty = lease, heartbeat, duty
        self._work: asyncio.Task | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> bool:
        """The first try, awaited (so a lone node holds its duties once started); then the
        heartbeat runs in the background. Whether the lease is held."""
        await self._beat()
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.lease.name}")
        return self.lease.held

    async def until(self, event: asyncio.Event) -> None:
        """Wait for ``event`` (set by the duty), or for the duty to end without it."""
        if self._work is None:
            return
        waiting = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({waiting, self._work}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()

    async def stop(self) -> None:
        for task in (self._task, self._work):
            await cancel_and_wait(task)
        try:
            await self.lease.release()
        except (SQLAlchemyError, OSError) as e:
            log.warning("the %s lease was not released (it expires by itself): %s", self.name, e)

    @property
    def name(self) -> str:
        return self.lease.name

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            await self._beat()

    async def _beat(self) -> None:
        before = self.lease.fence
        try:
            held = await self.lease.acquire()
        except (SQLAlchemyError, OSError) as e:
            log.warning("the %s lease could not be renewed: %s", self.name, e)
            held = self.lease.held
        if not held:
            if self._work is not None:
                log.warning("the %s lease was lost: its duty stops", self.name)
                self._work.cancel()
                self._work = None
            return
        if self._work is None or self.lease.fence != before:
            if self._work is not None:
                self._work.cancel()
            log.info("holding the %s lease (fence %d)", self.name, self.lease.fence)
            self._work = asyncio.create_task(self._do_duty(), name=f"duty-{self.name}")

    async def _do_duty(self) -> None:
        try:
            await self.duty()
        except LeaseLost as e:
            log.warning("the %s duty stopped: %s", self.name, e)
        except Exception:  # noqa: BLE001 - a failed duty must not end the hub; the next hold retries
            log.exception("the %s duty failed", self.name)


@asynccontextmanager
async def holding(lease: LeaderLease, heartbeat: float) -> AsyncIterator[bool]:
    """For a one-off command: take ``lease`` for the block and keep it renewed; yields whether
    it is held (the block then does its guarded work, or tells who holds it)."""
    if not await lease.acquire():
        yield False
        return

    async def renew() -> None:
        while True:
            await asyncio.sleep(heartbeat)
            try:
                if not await lease.renew():
                    log.warning("the %s lease was lost", lease.name)
                    return
            except (SQLAlchemyError, OSError) as e:  # the hold runs out unless a retry renews it
                log.warning("the %s lease could not be renewed: %s", lease.name, e)

    renewing = asyncio.create_task(renew(), name=f"lease-{lease.name}")
    try:
        yield True
    finally:
        await cancel_and_wait(renewing)
        await lease.release()


async def holder(engine: AsyncEngine, name: str) -> str | None:
    """Who holds the lease ``name`` now, as the row says."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
            )
        ).one_or_none()
    return row.holder if row is not None and row.expires_at > time.time() else None
