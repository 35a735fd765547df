"""Which node holds which live session, for nodes that share one index (PostgreSQL).

A session lives in the process that started it: its peer connections and media are there. That
node records two rows of ``leases`` (``hub.serve.tables``), ``room:<session id>`` and
``join:<invite code>``, held by its node id, renews them every heartbeat while the session lives
and releases them when it ends. A node asked about a session it does not have looks the row up:
a call for a session a live node holds is relayed to that node (at the URL its ``nodes`` row
gives, ``cluster.advertise_url``), keeping the caller's credentials, so the holder decides as if
the caller had reached it. A holder whose hold ran out, or whose heartbeat is older than a lease,
has stopped, and the session with it.

On SQLite the index is one node's: nothing is recorded, and every session is local.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import ClusterSettings
from hub.serve.leases import LeaderLease
from hub.serve.proxy import Hop, Upstream
from hub.serve.tables import leases, nodes
from hub.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ROOM = "room:"  # + session id
JOIN = "join:"  # + invite code
RELAYED_BY = (
    "X-Tessera-Relayed-By"  # a relayed call is answered where it arrives, never again relayed
)
KEEP_STOPPED_SECONDS = 3600.0  # a stopped node's rows say so this long, then they are removed


class RoomsUnavailable(RuntimeError):
    """The shared index did not record a new session's holder."""


@dataclass(frozen=True)
class Holder:
    """The node that holds a session; ``url`` None when that node has stopped."""

    node: str
    url: str | None


class Rooms:
    def __init__(
        self,
        engine: AsyncEngine,
        node: str,
        cluster: ClusterSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine, self.node, self.clock = engine, node, clock
        self.seconds, self.heartbeat = cluster.lease_seconds, cluster.heartbeat_seconds
        self.relay_to = Upstream()  # other nodes, over TCP
        self._held: dict[str, list[LeaderLease]] = {}  # session id -> its two leases

    async def start(self) -> None:
        await self.relay_to.start()

    async def close(self) -> None:
        await self.relay_to.close()

    async def claim(self, session_id: str, invite_code: str) -> None:
        """Record this node as the session's holder, under its id and its invite code."""
        try:
            await self._sweep()
            held = []
            for name in (ROOM + session_id, JOIN + invite_code):
                lease = LeaderLease(self.engine, name, self.node, self.seconds, self.clock)
                if not await lease.acquire():
                    raise RoomsUnavailable(f"{name} is held by another node")
                held.append(lease)
        except (SQLAlchemyError, OSError) as exc:
            raise RoomsUnavailable(f"the shared index did not record the session: {exc}") from exc
        self._held[session_id] = held

    async def release(self, session_id: str) -> None:
        for lease in self._held.pop(session_id, ()):
            try:
                await lease.release()
            except (SQLAlchemyError, OSError) as exc:
                log.warning(
                    "the %s lease was not released (it expires by itself): %s", lease.name, exc
                )

    async def renew(self) -> None:
        """Extend every hold of this node's live sessions, in one statement."""
        names = [lease.name for held in self._held.values() for lease in held]
        if not names:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(leases)
                .where(leases.c.holder == self.node, leases.c.name.in_(names))
                .values(expires_at=self.clock() + self.seconds)
            )

    async def keep(self) -> None:
        """Renew every heartbeat until cancelled; a missed renewal is retried at the next."""
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.renew()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("the telehealth session leases could not be renewed: %s", exc)

    async def find(self, name: str) -> Holder | None:
        """Who holds the session named by the lease ``name``; None for one nobody holds (never
        started, ended, or stopped long ago)."""
        query = (
            select(leases.c.holder, leases.c.expires_at, nodes.c.host, nodes.c.heartbeat_at)
            .select_from(leases.outerjoin(nodes, nodes.c.id == leases.c.holder))
            .where(leases.c.name == name)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None or row.holder is None:
            return None
        now = self.clock()
        alive = (
            row.holder != self.node  # this node holds no such session: it held it before a restart
            and row.expires_at > now
            and row.heartbeat_at is not None
            and now - row.heartbeat_at <= self.seconds
            and str(row.host).startswith(("http://", "https://"))
        )
        return Holder(row.holder, row.host if alive else None)

    async def relay(
        self, request: web.Request, holder: Holder, body: bytes | None = None
    ) -> web.StreamResponse:
        """The call, answered by the node that holds its session."""
        assert holder.url is not None
        hop = Hop(
            holder.url,
            silent=f"the hub node holding this session ({holder.node}) is not answering; "
            "try again shortly",
            headers={RELAYED_BY: self.node},
        )
        return await self.relay_to.relay(request, hop, body)

    async def _sweep(self) -> None:
        """Remove released rows, and those of sessions whose node stopped long ago."""
        row = leases.c
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(leases).where(
                    or_(
                        row.name.startswith(ROOM, autoescape=True),
                        row.name.startswith(JOIN, autoescape=True),
                    ),
                    row.expires_at < self.clock() - KEEP_STOPPED_SECONDS,
                )
            )


@contextlib.asynccontextmanager
async def kept(rooms: Rooms):
    """``rooms`` started, renewing its holds until the block ends."""
    await rooms.start()
    keeping = asyncio.create_task(rooms.keep(), name="telehealth-rooms")
    try:
        yield rooms
    finally:
        await cancel_and_wait(keeping)
        await rooms.close()
