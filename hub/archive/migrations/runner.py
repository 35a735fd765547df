"""Bring the index's schema to the revision this code needs: Alembic, run programmatically.

Three modes, chosen by the command that opens the index:

- ``upgrade`` (``tessera serve``, ``tessera demo``, ``tessera db upgrade``): create a new index,
  migrate an old one;
- ``create`` (every other command, and ``serve --no-upgrade``): create a new index, refuse an
  old one with a ``SchemaError`` naming both revisions;
- ``require`` (reader processes): refuse anything but the current revision; never write.

An up-to-date index costs one look at the version table. An upgrade holds a lock, so that two
processes starting together do not both migrate: ``pg_advisory_xact_lock`` on PostgreSQL and the
write lock (``BEGIN IMMEDIATE``) on SQLite; after taking it, the revision is read again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Connection, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

SchemaMode = Literal["upgrade", "create", "require"]
SCRIPTS = Path(__file__).parent
# The key of the PostgreSQL advisory lock: the same for every node sharing the database.
LOCK_KEY = int.from_bytes(b"tessera", "big")


class SchemaError(Exception):
    """The index is at another revision than this code needs, and this command may not move it."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the recorded revision; None without a version table
    head: str  # the revision this code needs
    tables: bool  # whether the database has tables (only looked up without a version table)

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def known(self) -> bool:
        """Whether this code has the recorded revision (a newer release may have written it)."""
        return self.current is None or self.current in revisions()

    @property
    def empty(self) -> bool:
        return self.current is None and not self.tables

    def describe(self) -> str:
        if self.current is not None:
            return self.current
        return "none (an index made before schema migrations)" if self.tables else "none (empty)"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built here: no alembic.ini is read from the working directory."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


@cache
def scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


@cache
def revisions() -> frozenset[str]:
    return frozenset(script.revision for script in scripts().walk_revisions())


def head() -> str:
    revision = scripts().get_current_head()
    assert revision is not None, "no revisions in hub/archive/migrations/versions"
    return revision


async def read_state(engine: AsyncEngine) -> SchemaState:
    async with engine.connect() as conn:
        return await conn.run_sync(_state)


async def prepare(engine: AsyncEngine, mode: SchemaMode = "create") -> SchemaState:
    """Bring the index to the head revision as far as ``mode`` allows (else ``SchemaError``).

    Returns the state this process found: read again under the lock when it upgraded, so of
    two processes starting together one finds the old revision and the other the head."""
    state = await read_state(engine)
    if state.up_to_date:
        return state
    _check_allowed(state, mode, _where(engine))
    async with engine.connect() as conn:
        found = await _locked_upgrade(conn)
    if found.empty:
        log.info("index created at schema revision %s", found.head)
    elif not found.up_to_date:
        # A warning so that it shows at the default log level: the operator should see it.
        log.warning("index schema upgraded from revision %s to %s", found.describe(), found.head)
    return found


def _check_allowed(state: SchemaState, mode: SchemaMode, where: str) -> None:
    if not state.known:
        raise SchemaError(
            f"the index {where} is at revision {state.current}, which this Tessera does not know "
            f"(a newer release wrote it); this Tessera needs revision {state.head}"
        )
    if mode == "upgrade" or (mode == "create" and state.empty):
        return
    raise SchemaError(outdated_message(state, where))


def outdated_message(state: SchemaState, where: str) -> str:
    return (
        f"the index {where} is at revision {state.describe()}; this Tessera needs revision "
        f"{state.head}. Upgrade it with `tessera db upgrade` "
        "(or start `tessera serve` without --no-upgrade)"
    )


def _where(engine: AsyncEngine) -> str:
    return engine.url.render_as_string(hide_password=True)


async def _locked_upgrade(conn: AsyncConnection) -> SchemaState:
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations copy a table and drop the old one, which foreign keys would refuse;
        # the pragma has no effect inside a transaction, so it comes first.
        await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        await conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock: a second process waits
    elif conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
    try:
        found = await conn.run_sync(_upgrade)
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise
    finally:
        if sqlite:
            await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            await conn.commit()
    return found


def _upgrade(conn: Connection) -> SchemaState:
    from alembic import command

    found = _state(conn)  # another process may have upgraded while this one waited
    if found.empty:
        _create(conn)
    elif not found.up_to_date:
        if found.current is None:
            log.info("the index predates schema migrations: the baseline adopts it")
        command.upgrade(alembic_config(conn), "head")
    return found


def _create(conn: Connection) -> None:
    """A new index gets the declared tables at once, stamped with the head revision: the
    same schema the revisions build step by step (the migration tests compare the two), in a
    fraction of the time."""
    from alembic.runtime.migration import MigrationContext

    from hub.archive.migrations import schema

    schema.metadata.create_all(conn, tables=list(schema.TABLES))
    MigrationContext.configure(conn).stamp(scripts(), "head")


def _state(conn: Connection) -> SchemaState:
    current = _current(conn)
    tables = current is None and bool(inspect(conn).get_table_names())
    return SchemaState(current, head(), tables)


def _current(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()
