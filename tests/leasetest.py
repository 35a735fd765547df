"""Helpers for tests of single-holder duties: one index seen by several nodes, and clocks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive.guard import Guard
from hub.archive.index import create_schema, make_engine


class Clock:
    """A node's wall clock, moved by the test (a node's clock may run ahead of another's)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def index_url(new_database, tmp_path: Path) -> str:
    """A fresh index: a PostgreSQL database with TESSERA_TEST_POSTGRES, else a SQLite file."""
    return await new_database() or f"sqlite+aiosqlite:///{tmp_path / 'index.sqlite'}"


@asynccontextmanager
async def engines(url: str, count: int) -> AsyncIterator[list[AsyncEngine]]:
    """``count`` engines on one index at the current schema: one per node."""
    made = [make_engine(url) for _ in range(count)]
    try:
        await create_schema(made[0])
        yield made
    finally:
        for engine in made:
            await engine.dispose()


class PausedGuard:
    """``inner``, with its first batch held back until ``resume`` is set: a janitor paused after
    it listed its candidates and before it deletes. ``paused`` is set when it waits."""

    def __init__(self, inner: Guard) -> None:
        self.inner = inner
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[object]:
        self.paused.set()
        await self.resume.wait()
        async with self.inner.batch() as held:
            yield held

    def check(self) -> None:
        self.inner.check()


async def cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
