"""A consistent copy of the index, taken while the hub serves.

SQLite: ``VACUUM INTO`` writes the database as one read transaction saw it. PostgreSQL: every
table is read in one ``REPEATABLE READ`` read-only transaction and written into a SQLite file
of the same schema, so that a snapshot is one portable file whichever engine made it, and a
restore can open it as an embedded index at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive.migrations import schema
from hub.archive.migrations.runner import read_state

BATCH = 2000


async def take(engine: AsyncEngine, dest: Path) -> None:
    if engine.dialect.name == "sqlite":
        source = make_url(str(engine.url)).database
        assert source, "an in-memory index has nothing to back up"
        await asyncio.to_thread(_vacuum_into, Path(source), dest)
    else:
        await _copy_tables(engine, dest)


def _vacuum_into(source: Path, dest: Path) -> None:
    conn = sqlite3.connect(source, timeout=60)
    try:
        conn.execute("VACUUM INTO ?", (str(dest),))
    finally:
        conn.close()


async def _copy_tables(engine: AsyncEngine, dest: Path) -> None:
    revision = (await read_state(engine)).current
    target = create_engine(f"sqlite:///{dest}")
    try:
        await asyncio.to_thread(_create, target, revision)
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                for table in schema.TABLES:
                    result = await conn.stream(select(table))
                    async for rows in result.mappings().partitions(BATCH):
                        batch = [dict(r) for r in rows]
                        await asyncio.to_thread(_insert, target, table, batch)
    finally:
        target.dispose()


def _create(target, revision: str | None) -> None:
    from alembic.runtime.migration import MigrationContext

    with target.begin() as conn:
        schema.metadata.create_all(conn, tables=list(schema.TABLES))
        if revision is not None:
            MigrationContext.configure(conn).stamp(_scripts(), revision)


def _scripts():
    from hub.archive.migrations.runner import scripts

    return scripts()


def _insert(target, table, rows: list[dict]) -> None:
    with target.begin() as conn:
        conn.execute(table.insert(), rows)
