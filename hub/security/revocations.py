"""Credential changes, made known at once to every process that uses the same index.

Each process keeps resolved tokens for a few seconds (``accounts.CACHE_SECONDS``). A revoked
token, a disabled user or a new password clears that cache in the process that made the change;
the others (the reader processes of ``serve --workers``, the other nodes, or the server when the
change was made on the command line) learn of it here.

SQLite: eight bytes in a file next to the database are mapped into every process. A change
writes new random bytes there, and each token lookup compares them, one memory read, with what
it saw last and empties its cache when they differ.

PostgreSQL: the change sends a NOTIFY on ``CHANNEL`` in its own transaction, so it is announced
exactly when it commits, and every process LISTENs on a connection of its own and empties its
cache when one arrives (``CredentialListener``). A notification can be lost while that
connection is down, so the cache age is also bounded to ``BACKSTOP_SECONDS`` there: whatever
happens to the listener, a revoked credential is honoured for less than a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

SIZE = 8
CHANNEL = "tessera_credentials"
# The longest a process trusts a cached token on PostgreSQL, listener or not.
BACKSTOP_SECONDS = 0.5
# How often a quiet listener connection is checked, and how long a check may take.
PING_SECONDS = 5.0
RECONNECT_SECONDS = (0.1, 5.0)  # first and longest wait between connection attempts


class ChangeSignal:
    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        self._seen = self._map[:SIZE]

    def changed(self) -> bool:
        """Whether any process announced a change since this one last looked."""
        now = self._map[:SIZE]
        if now == self._seen:
            return False
        self._seen = now
        return True

    def announce(self) -> None:
        self._map[:SIZE] = os.urandom(SIZE)  # random, so two announcements never look like none


_signals: dict[str, ChangeSignal | None] = {}


def signal_for(engine: AsyncEngine) -> ChangeSignal | None:
    """The engine's signal, opened on first use (a small file: call it off the event loop
    once, as hub.security's start-up does); None for databases that are not SQLite files."""
    key = str(engine.url)
    if key not in _signals:
        _signals[key] = _open(engine)
    return _signals[key]


def _open(engine: AsyncEngine) -> ChangeSignal | None:
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    try:
        return ChangeSignal(Path(f"{url.database}-credentials"))
    except OSError:
        return None


def cache_seconds(engine: AsyncEngine, wanted: float) -> float:
    """How long a resolved token may be kept: ``wanted`` where the change signal or a single
    process covers every change, at most ``BACKSTOP_SECONDS`` on a shared server database."""
    if engine.url.get_backend_name() == "sqlite":
        return wanted
    return min(wanted, BACKSTOP_SECONDS)


async def announce_in(conn: AsyncConnection) -> None:
    """Announce a credential change with the transaction ``conn`` is in (PostgreSQL delivers
    the notification when it commits, and never if it rolls back)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(CHANNEL, "")))


class CredentialListener:
    """LISTENs on ``CHANNEL`` and calls ``on_change`` for each notification, and after each
    (re)connection, since notifications sent while it was away are lost."""

    def __init__(self, engine: AsyncEngine, on_change: Callable[[], None]) -> None:
        self.engine = engine
        self.on_change = on_change
        self.notifications = 0
        self.connections = 0
        self.connected = asyncio.Event()
        self.server_pid: int | None = None

    async def run(self) -> None:
        wait = RECONNECT_SECONDS[0]
        while True:
            began = time.monotonic()
            try:
                conn = await self._connect()
                try:
                    await self._listen(conn)
                finally:
                    self.connected.clear()
                    conn.terminate()
                log.warning("credential listener: connection lost; reconnecting")
            except Exception as e:  # noqa: BLE001 - the listener outlives any fault
                log.warning("credential listener: %s; reconnecting", e or type(e).__name__)
            # A link that held a while is retried at once; one failing over and over, less often.
            held = time.monotonic() - began > PING_SECONDS
            wait = RECONNECT_SECONDS[0] if held else min(wait * 2, RECONNECT_SECONDS[1])
            await asyncio.sleep(wait)

    async def _connect(self):
        import asyncpg

        # The engine's own connection arguments, less the options only its dialect takes.
        _, opts = self.engine.dialect.create_connect_args(self.engine.url)
        for dialect_only in ("prepared_statement_cache_size", "prepared_statement_name_func"):
            opts.pop(dialect_only, None)
        opts.setdefault("timeout", PING_SECONDS)
        return await asyncpg.connect(**opts)

    async def _listen(self, conn) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._notified)
        self.connections += 1
        self.server_pid = conn.get_server_pid()
        self.on_change()  # whatever changed while no one listened
        self.connected.set()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), PING_SECONDS)
                break
            await conn.execute("SELECT 1", timeout=PING_SECONDS)  # a quiet link may be dead

    def _notified(self, _conn, _pid: int, _channel: str, _payload: str) -> None:
        self.notifications += 1
        self.on_change()


def listener_for(engine: AsyncEngine, on_change: Callable[[], None]) -> CredentialListener | None:
    """A listener for ``engine``'s database; None where there is nothing to listen to (SQLite,
    or a PostgreSQL driver other than asyncpg, which then relies on the cache bound alone)."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "asyncpg":
        return None
    return CredentialListener(engine, on_change)
