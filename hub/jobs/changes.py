"""Wake-ups for those following a job (server-sent events): its changes on this node at once,
and, on PostgreSQL, the changes other nodes write, by a LISTEN/NOTIFY hint.

A hint carries only the job id; the follower re-reads the job's row. Hints may be lost (the
listening connection drops, or the index is SQLite, which has none), so followers of a job this
node does not run also re-read its row every ``POLL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CHANNEL = "tessera_jobs"
POLL_SECONDS = 1.0  # a follower of another node's job re-reads its row at least this often
RECONNECT_SECONDS = 2.0


async def announce(conn: AsyncConnection, job_ids: Iterable[str]) -> None:
    """Tell the other nodes, when ``conn``'s transaction commits, that these jobs' rows changed."""
    if conn.dialect.name != "postgresql":
        return
    for job_id in job_ids:
        await conn.execute(
            text("SELECT pg_notify(:channel, :id)"), {"channel": CHANNEL, "id": job_id}
        )


class JobChanges:
    """Who waits for which job, and the listener that wakes them on other nodes' hints."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._waiting: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener: asyncio.Task | None = None
        self.listening = asyncio.Event()  # set while other nodes' hints arrive

    def start(self) -> None:
        if self.engine.dialect.name == "postgresql":
            self._listener = asyncio.create_task(self._listen(), name="job-change-listener")

    async def stop(self) -> None:
        await cancel_and_wait(self._listener)
        self._listener = None

    def changed(self, job_id: str) -> None:
        for event in self._waiting.get(job_id, ()):
            event.set()

    async def wait(self, job_id: str, seconds: float) -> bool:
        """Return at the job's next change (or hint of one): True; or after ``seconds``: False."""
        event = asyncio.Event()
        self._waiting[job_id].add(event)
        try:
            await asyncio.wait_for(event.wait(), seconds)
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self._waiting[job_id]
            waiting.discard(event)
            if not waiting:
                del self._waiting[job_id]

    async def _listen(self) -> None:
        """LISTEN on a connection of the engine's own (its connect settings), kept for as long as
        it lives; a lost connection is made again, polling covers the gap."""
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the index may be restarting; followers still poll
                log.warning("job change hints lost; listening again", exc_info=True)
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen_once(self) -> None:
        conn = await self.engine.connect()
        try:
            raw = (await conn.get_raw_connection()).driver_connection  # an asyncpg Connection
            closed = asyncio.Event()
            raw.add_termination_listener(lambda _conn: closed.set())
            await raw.add_listener(CHANNEL, self._on_hint)
            self.listening.set()
            await closed.wait()
        finally:
            self.listening.clear()
            # LISTEN outlives transactions: the connection is dropped, never given back to the pool.
            await asyncio.shield(conn.invalidate())
            await asyncio.shield(conn.close())

    def _on_hint(self, _conn: object, _pid: int, _channel: str, job_id: str) -> None:
        self.changed(job_id)
