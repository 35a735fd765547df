"""What a PACS administrator asks of a running hub: versions, storage, the index, the queues, the
nodes, open DICOM associations, backups and the recent errors, in one report.

Every figure comes from where it is kept: counts and queue depths from the index (async
queries), the data folder's free space and the SQLite file's size from the file system (in a
thread), the open associations from the DIMSE server, the errors from this process's ring
(``hub.recent_errors``). Bytes are those of the stored objects as the index names them: objects
are kept by content, so identical bytes count once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import msgspec
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.archive.index import instances, series, studies
from hub.backup.status import backup_status
from hub.config import Settings
from hub.forward.states import STATES as FORWARD_STATES
from hub.forward.tables import forward_tasks
from hub.jobs.leases import ACTIVE as ACTIVE_JOBS
from hub.jobs.tables import jobs
from hub.recent_errors import ErrorRecord, recent
from hub.serve.tables import nodes

JOB_STATES = ("queued", "running", "ingesting", "done", "failed")
DISTRIBUTIONS = ("tessera-hub", "pydicom", "pynetdicom", "SQLAlchemy")


class Versions(msgspec.Struct):
    tessera_hub: str
    python: str
    pydicom: str
    pynetdicom: str
    sqlalchemy: str
    index_engine: str  # sqlite | postgresql
    index_driver: str  # aiosqlite | asyncpg, with its version
    index_server: str  # the SQLite library's or the PostgreSQL server's version


class Storage(msgspec.Struct):
    kind: Literal["local", "s3"]
    location: str  # the blob folder, or s3://bucket/prefix
    encrypted: bool
    objects: int  # distinct stored objects the index names
    object_bytes: int
    data_folder: str
    data_folder_free_bytes: int | None  # None: the folder cannot be read
    data_folder_total_bytes: int | None


class IndexState(msgspec.Struct):
    engine: str
    size_bytes: int | None  # the SQLite files (with the WAL) or pg_database_size
    studies: int
    series: int
    instances: int  # current versions


class Node(msgspec.Struct):
    id: str
    host: str
    version: str
    started_at: str
    heartbeat_age_seconds: float
    alive: bool  # it renewed its row within the lease time (cluster.lease_seconds)
    active_jobs: int  # jobs whose lease it holds now
    this_node: bool


class Dimse(msgspec.Struct):
    enabled: bool
    ae_title: str
    port: int | None
    max_associations: int | None
    open_associations: int | None  # established now
    connecting: int | None  # connected, not yet asked for an association


class LastBackup(msgspec.Struct):
    name: str
    at: str
    objects: int
    bytes: int
    unreadable: int = 0
    age_seconds: float | None = None


class LastVerify(msgspec.Struct):
    at: str
    outcome: str  # clean | problems
    backup: str | None
    objects: int
    read: int
    problems: list[str] = []
    age_seconds: float | None = None


class BackupSchedule(msgspec.Struct):
    interval_hours: float | None
    verify_read_percent: float


class Backups(msgspec.Struct):
    """As ``GET /api/backup/status`` answers (``hub.backup.status``)."""

    target: str | None
    schedule: BackupSchedule
    held_by: str | None
    last_run: dict[str, Any] | None
    last_backup: LastBackup | None
    last_verify: LastVerify | None
    target_error: str | None
    next_run: str | None
    stale: bool


class SystemReport(msgspec.Struct):
    at: str
    node: str  # the node that answered
    versions: Versions
    storage: Storage
    index: IndexState
    forwarding: dict[str, int]  # forward tasks by state
    jobs: dict[str, int]  # jobs by status
    nodes: list[Node]
    dimse: Dimse
    backups: Backups
    recent_errors: list[ErrorRecord]  # newest first, at ERROR or above, of this process


async def system_report(
    settings: Settings, engine: AsyncEngine, node: str, dimse: Dimse
) -> SystemReport:
    local, backups = await asyncio.gather(
        asyncio.to_thread(_local_facts, settings, engine), backup_status(settings.backup, engine)
    )
    async with engine.connect() as conn:
        server = await _server_version(conn)
        pg_size = await _postgres_size(conn)
        counted = await _index_counts(conn)
        objects, object_bytes = await _stored_objects(conn)
        forwarding = await _by_state(conn, forward_tasks.c.state, FORWARD_STATES)
        job_states = await _by_state(conn, jobs.c.status, JOB_STATES)
        registered = await _nodes(conn, settings, node)
    versions = Versions(**local["versions"], index_server=server)
    storage = Storage(**local["storage"], objects=objects, object_bytes=object_bytes)
    size = pg_size if pg_size is not None else local["sqlite_bytes"]
    index = IndexState(engine=engine.dialect.name, size_bytes=size, **counted)
    return SystemReport(
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        node=node,
        versions=versions,
        storage=storage,
        index=index,
        forwarding=forwarding,
        jobs=job_states,
        nodes=registered,
        dimse=dimse,
        backups=msgspec.convert(backups, Backups),
        recent_errors=recent(),
    )


# -- in a thread: the file system and the installed distributions -------------------------------


def _local_facts(settings: Settings, engine: AsyncEngine) -> dict[str, Any]:
    storage = settings.storage
    free = total = None
    try:
        usage = shutil.disk_usage(settings.data_dir)
        free, total = usage.free, usage.total
    except OSError:
        pass
    if storage.backend == "s3":
        location = f"s3://{storage.s3.bucket}/{storage.s3.prefix}".rstrip("/")
    else:
        location = str(settings.blob_dir.resolve())
    driver = engine.dialect.driver
    return {
        "versions": {
            "tessera_hub": _version("tessera-hub"),
            "python": platform.python_version(),
            "pydicom": _version("pydicom"),
            "pynetdicom": _version("pynetdicom"),
            "sqlalchemy": _version("SQLAlchemy"),
            "index_engine": engine.dialect.name,
            "index_driver": f"{driver} {_version(driver)}".strip(),
        },
        "storage": {
            "kind": storage.backend,
            "location": location,
            "encrypted": bool(storage.encryption_key_file or storage.encryption_key),
            "data_folder": str(settings.data_dir.resolve()),
            "data_folder_free_bytes": free,
            "data_folder_total_bytes": total,
        },
        "sqlite_bytes": _sqlite_bytes(engine),
    }


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return ""


def _sqlite_bytes(engine: AsyncEngine) -> int | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    total = 0
    for suffix in ("", "-wal"):  # committed pages not yet checkpointed live in the WAL
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(Path(database + suffix)).st_size
    return total


# -- the index ----------------------------------------------------------------------------------


async def _server_version(conn: AsyncConnection) -> str:
    if conn.dialect.name == "sqlite":
        return str(await conn.scalar(text("SELECT sqlite_version()")))
    if conn.dialect.name == "postgresql":
        return str(await conn.scalar(text("SHOW server_version")))
    return ".".join(map(str, conn.dialect.server_version_info or ()))


async def _postgres_size(conn: AsyncConnection) -> int | None:
    if conn.dialect.name != "postgresql":
        return None
    return int(await conn.scalar(text("SELECT pg_database_size(current_database())")))


async def _index_counts(conn: AsyncConnection) -> dict[str, int]:
    current = instances.c.is_current.is_(True)
    return {
        "studies": await conn.scalar(select(func.count()).select_from(studies)) or 0,
        "series": await conn.scalar(select(func.count()).select_from(series)) or 0,
        "instances": await conn.scalar(select(func.count()).where(current)) or 0,
    }


async def _stored_objects(conn: AsyncConnection) -> tuple[int, int]:
    stored = select(instances.c.sha256, instances.c.size).distinct().subquery()
    row = (
        await conn.execute(select(func.count(), func.coalesce(func.sum(stored.c.size), 0)))
    ).one()
    return int(row[0]), int(row[1])


async def _by_state(conn: AsyncConnection, column: Any, known: tuple[str, ...]) -> dict[str, int]:
    """Rows by the value of ``column``: every known state (0 when none), then any other."""
    rows = await conn.execute(select(column, func.count()).group_by(column))
    counted = {state: int(n) for state, n in rows}
    return {state: counted.pop(state, 0) for state in known} | counted


async def _nodes(conn: AsyncConnection, settings: Settings, this_node: str) -> list[Node]:
    now = time.time()
    holders = (
        select(jobs.c.lease_owner, func.count())
        .where(jobs.c.status.in_(ACTIVE_JOBS), jobs.c.lease_expires_at > now)
        .group_by(jobs.c.lease_owner)
    )
    held = {owner: int(n) for owner, n in await conn.execute(holders)}
    rows = await conn.execute(select(nodes).order_by(nodes.c.id))
    lease = settings.cluster.lease_seconds
    return [
        Node(
            id=row.id,
            host=row.host,
            version=row.version,
            started_at=datetime.fromtimestamp(row.started_at, UTC).isoformat(timespec="seconds"),
            heartbeat_age_seconds=round(max(0.0, now - row.heartbeat_at), 1),
            alive=now - row.heartbeat_at <= lease,
            active_jobs=held.get(row.id, 0),
            this_node=row.id == this_node,
        )
        for row in rows
    ]
