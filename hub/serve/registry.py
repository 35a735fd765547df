"""The node registry: this node's row in ``nodes``, written at start and renewed while it runs.

The row says who is alive (host, pid, version, started_at) and when it last said so
(``heartbeat_at``). ``host`` is where the node is: for a serving node the URL the other nodes
reach it on (``cluster.advertise_url``, default ``http://<host>:<port>``), which they use to relay
calls for a live telehealth session it holds (telehealth/README.md). Nothing is taken from a node whose heartbeat stops: the work it held carries
leases of its own, which simply run out (hub/forward/README.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web
from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app_keys import ARCHIVE_KEY, NODE_KEY, SETTINGS_KEY
from hub.config import Settings
from hub.serve.nodes import node_id
from hub.serve.tables import nodes
from hub.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class NodeRegistry:
    def __init__(
        self,
        engine: AsyncEngine,
        node: str,
        heartbeat_seconds: float,
        clock: Callable[[], float] = time.time,
        address: str = "",
    ) -> None:
        self.engine = engine
        self.node = node
        self.address = address or socket.gethostname()
        self.heartbeat_seconds = heartbeat_seconds
        self.clock = clock
        self._beating: asyncio.Task[None] | None = None

    async def register(self) -> None:
        """Write this node's row as a fresh start (a restarted node keeps its id)."""
        now = self.clock()
        values = {
            "host": self.address,
            "pid": os.getpid(),
            "version": _version(),
            "started_at": now,
            "heartbeat_at": now,
        }
        await self._upsert(values)

    async def beat(self) -> None:
        """Renew ``heartbeat_at``; a row someone removed is written again."""
        now = self.clock()
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(nodes).where(nodes.c.id == self.node).values(heartbeat_at=now)
            )
        if not res.rowcount:
            await self.register()

    async def heartbeat_at(self) -> float | None:
        async with self.engine.connect() as conn:
            return await conn.scalar(select(nodes.c.heartbeat_at).where(nodes.c.id == self.node))

    async def start(self) -> None:
        await self._warn_if_alive_elsewhere()
        await self.register()
        self._beating = asyncio.create_task(self._beat_forever(), name="node-heartbeat")

    async def stop(self) -> None:
        await cancel_and_wait(self._beating)
        self._beating = None

    async def _warn_if_alive_elsewhere(self) -> None:
        """A node id is one process's: a second one would return the first one's forward
        tasks to the queue at its start (``ForwardQueue.requeue_own``)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(nodes).where(nodes.c.id == self.node))).first()
        if row is None or (row.host, row.pid) == (self.address, os.getpid()):
            return
        silent = self.clock() - row.heartbeat_at
        if silent < 2 * self.heartbeat_seconds:
            log.warning(
                "node %s: process %d on %s beat %.1f s ago under this id; give each node "
                "its own id (cluster.node_id)",
                self.node,
                row.pid,
                row.host,
                silent,
            )

    async def _upsert(self, values: dict) -> None:
        # Update, then insert when there was no row: portable across SQLite and PostgreSQL.
        async with self.engine.begin() as conn:
            res = await conn.execute(update(nodes).where(nodes.c.id == self.node).values(values))
            if not res.rowcount:
                await conn.execute(insert(nodes).values(id=self.node, **values))

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.beat()
            except SQLAlchemyError:
                log.warning("node %s: the heartbeat could not be written", self.node, exc_info=True)


async def process_ended(engine: AsyncEngine, node: str) -> bool:
    """Whether the process registered as ``node`` has ended. Only meaningful for this machine's
    own node (the data folder's id), whose process is a local one."""
    async with engine.connect() as conn:
        pid = await conn.scalar(select(nodes.c.pid).where(nodes.c.id == node))
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, as another user
        return False
    return False


def advertised_url(settings: Settings) -> str:
    """The URL the other nodes reach this node on: the setting, else this node's listener
    (its host name when it listens on every interface)."""
    if settings.cluster.advertise_url:
        return settings.cluster.advertise_url.rstrip("/")
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _version() -> str:
    try:
        return version("tessera-hub")
    except PackageNotFoundError:
        return ""


def setup(app: web.Application) -> None:
    """Register this node while the app runs; the forward worker and other leased work read
    its id from ``app[NODE_KEY]``. Added before the doors, so it starts before their work."""
    app.cleanup_ctx.append(_registered)


async def _registered(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    node = await asyncio.to_thread(node_id, settings)  # may make and keep the id file
    registry = NodeRegistry(
        app[ARCHIVE_KEY].engine,
        node,
        settings.cluster.heartbeat_seconds,
        address=advertised_url(settings),
    )
    await registry.start()
    app[NODE_KEY] = registry
    log.info("node %s registered", node)
    try:
        yield
    finally:
        await registry.stop()
