"""Index writes of one study or one instance, one node at a time.

Within a process the ingest lock already runs one index transaction at a time. Nodes sharing a
PostgreSQL index do not share that lock: two of them ingesting objects of one new study would
both find no study row and both insert one (the second fails on the unique key), and two
ingesting one SOP Instance UID would both find no current instance and both insert one. So on
PostgreSQL an ingest transaction first takes transaction-scoped advisory locks on the object's
study and instance UIDs: a second node's transaction for the same study or instance waits for
the first to commit, and its duplicate check then sees the first's rows (each statement reads
what is committed when it starts). Locks are taken in key order, so two nodes never wait for
each other. SQLite needs none: it has one writer at a time.

Other unique rows two studies may share (a new patient named by both) are left to the unique
keys: the ingest retries a transaction that meets a row committed meanwhile
(``hub.archive.ingest``).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

NAMESPACE = b"tessera.uid:"


def key(uid: str) -> int:
    """A signed 64-bit advisory-lock key for a UID, the same in every process (unlike hash())."""
    digest = hashlib.sha256(NAMESPACE + uid.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock_uids(conn: AsyncConnection, *uids: str) -> None:
    """Hold locks on ``uids`` until ``conn``'s transaction ends (PostgreSQL; no-op elsewhere)."""
    if conn.dialect.name != "postgresql":
        return
    for k in sorted({key(uid) for uid in uids}):
        await conn.execute(select(func.pg_advisory_xact_lock(k)))
