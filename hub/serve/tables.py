"""Index tables that let several nodes share one index: who is alive, and who holds which duty.

``nodes`` is the registry: each ``tessera serve`` writes its row at start and renews
``heartbeat_at`` while it runs. ``leases`` holds the duties only one node may do at a time
(janitor, garbage collection, scheduled backup): the holder, when its hold ends, and a fencing
counter raised at every change of holder, so a node that lost its lease can tell its late work
from the new holder's.

Queued work (forward tasks, jobs) carries its own lease columns in its table.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, String, Table

from hub.archive.index import metadata

nodes = Table(
    "nodes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(), nullable=False, default=""),
    Column("pid", Integer, nullable=False, default=0),
    Column("version", String(64), nullable=False, default=""),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(64), nullable=True),
    Column("fence", BigInteger, nullable=False, default=0),
    Column("expires_at", Float, nullable=False, default=0.0),
)
