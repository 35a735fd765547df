"""Which node runs which job: the lease columns of the ``jobs`` table.

A node writes its id and an expiry on a job it starts and renews the expiry of its active jobs
every heartbeat. A job whose lease ran out lost its node: any node's reaper fails it with the
reason. It cannot be taken over, because its upload is on the disk of the node that received it;
the instances it ingested before stay in the archive.

Expiries are wall-clock seconds of the writing node, so the nodes' clocks must agree to well
within ``cluster.lease_seconds``.
"""

from __future__ import annotations

import time

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.jobs.changes import announce
from hub.jobs.tables import jobs

ACTIVE = ("queued", "running", "ingesting")


def restarted_error(node: str) -> str:
    return f"interrupted: node {node} restarted while the job was running"


def stopped_error(node: str | None, lease_seconds: float) -> str:
    if node is None:  # written before jobs had leases
        return "interrupted: the server stopped while the job was running"
    return (
        f"interrupted: node {node} stopped while the job was running (no heartbeat for "
        f"{lease_seconds:g} s); its upload is kept on that node, so no other node can resume it"
    )


def incomplete(instances: int, expected: int | None = None) -> str:
    """The end of a failed job's error when part of its study is in the archive."""
    if not instances:
        return ""
    of = f" of {expected}" if expected else ""
    return f"; the study is incomplete: {instances}{of} instances were stored"


async def renew(engine: AsyncEngine, node: str, job_ids: set[str], until: float) -> set[str]:
    """Extend this node's leases on ``job_ids``; returns those it still holds (active, its own)."""
    if not job_ids:
        return set()
    async with engine.begin() as conn:
        rows = await conn.execute(
            update(jobs)
            .where(
                jobs.c.id.in_(sorted(job_ids)),
                jobs.c.lease_owner == node,
                jobs.c.status.in_(ACTIVE),
            )
            .values(lease_expires_at=until)
            .returning(jobs.c.id)
        )
        return set(rows.scalars())


async def fail_own(engine: AsyncEngine, node: str) -> list[str]:
    """At start: this node's jobs still active were cut off when it stopped; fail them."""
    return await _fail(engine, jobs.c.lease_owner == node, lambda _owner: restarted_error(node))


async def reap(engine: AsyncEngine, lease_seconds: float, now: float | None = None) -> list[str]:
    """Fail the active jobs whose lease ran out, whoever held it; returns their ids."""
    now = time.time() if now is None else now
    expired = or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at < now)
    return await _fail(engine, expired, lambda owner: stopped_error(owner, lease_seconds))


async def _fail(engine: AsyncEngine, which, error_of) -> list[str]:
    """Fail the active jobs matching ``which``, each with ``error_of(owner)`` and how much of its
    study was stored. Each update checks ``which`` again: a renewal meanwhile keeps the job."""
    failed: list[str] = []
    async with engine.begin() as conn:
        rows = await conn.execute(
            select(jobs.c.id, jobs.c.lease_owner, jobs.c.instances).where(
                jobs.c.status.in_(ACTIVE), which
            )
        )
        for job_id, owner, instances in rows.all():
            done = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_(ACTIVE), which)
                .values(
                    status="failed",
                    error=error_of(owner) + incomplete(instances),
                    finished_at=time.time(),
                )
            )
            if done.rowcount:
                failed.append(job_id)
        await announce(conn, failed)
    return failed
