"""The janitor: the duty of the node that holds the ``janitor`` lease (``hub.serve.leases``).

From each new hold, and then every ``cluster.sweep_seconds``, one round: the orphan blobs of a
local store are parked (``hub.archive.orphans``, the start-up scan), and in a bucket abandoned
multipart uploads are aborted and objects no row names removed (``hub.archive.blobs.janitor``).
Every batch of those passes the lease's fence check first, so a node that lost the lease while
it listed removes nothing. A lone node always holds the lease, so it sweeps as before.
"""

from __future__ import annotations

import asyncio
import logging

from hub.archive import Archive, orphans
from hub.archive.blobs import StoreUnavailable
from hub.archive.blobs.configured import sweep_bucket
from hub.archive.guard import Guard
from hub.serve.leases import LeaseLost

log = logging.getLogger(__name__)

LEASE = "janitor"


class JanitorDuty:
    """``guard``: the lease (``LeaderLease``) every batch passes. ``scanned`` is set once the
    first round's start-up scan (a local store's) is done."""

    def __init__(self, archive: Archive, guard: Guard, grace: float, every: float) -> None:
        self.archive, self.guard = archive, guard
        self.grace, self.every = grace, every
        self.scanned = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except LeaseLost:
                raise
            except Exception:  # noqa: BLE001 - the next round retries
                log.exception("a janitor round failed")
            await asyncio.sleep(self.every)

    async def round(self) -> None:
        archive = self.archive
        try:
            await orphans.quarantine_old(
                archive.engine,
                archive.store,
                grace=self.grace,
                lock=archive.ingestor.lock,
                guard=self.guard,
            )
        finally:
            self.scanned.set()
        try:
            swept = await sweep_bucket(archive.store, archive.engine, self.grace, self.guard)
        except StoreUnavailable as e:
            log.warning("the sweep of the object store did not run: %s", e)
            return
        if swept is not None:
            log.info(
                "sweep: %d abandoned upload(s) aborted, %d unnamed object(s) removed",
                len(swept.aborted),
                len(swept.removed),
            )
