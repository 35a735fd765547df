"""The janitor removes only while its node holds the janitor lease: two nodes on one index and
one store, real objects in a local folder and in S3 (SeaweedFS), on SQLite and on PostgreSQL
when the run has one."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from leasetest import Clock, PausedGuard, index_url
from pydicom.data import get_testdata_file
from s3_server import SeaweedS3, store_fields

from hub.archive import Archive, Source
from hub.archive.blobs.configured import s3_of
from hub.archive.blobs.janitor import S3Janitor
from hub.archive.blobs.local import LocalBlobStore
from hub.cli import verify_holding_the_janitor
from hub.config import ClusterSettings, Settings
from hub.serve.janitor_duty import LEASE, JanitorDuty
from hub.serve.leases import LeaderLease, LeaseLost
from hub.stores import open_store

CT = Path(get_testdata_file("CT_small.dcm")).read_bytes()
LEASE_SECONDS = 10.0
GRACE = 3600.0
ORPHANS = 3


@dataclass
class Node:
    archive: Archive
    lease: LeaderLease


@pytest.fixture(params=["local", "s3"])
def store_fields_of(request: pytest.FixtureRequest) -> dict:
    """The store both nodes share: one local folder, or one bucket prefix."""
    if request.param == "local":
        return {}
    server: SeaweedS3 = request.getfixturevalue("seaweedfs")
    return store_fields(server)


@pytest.fixture
async def nodes(new_database, tmp_path: Path, store_fields_of: dict) -> AsyncIterator[list[Node]]:
    """Two nodes, each with its own engine on the shared index, sharing one clock."""
    url = await index_url(new_database, tmp_path)
    clock = Clock(time.time())
    made: list[Node] = []
    for name in ("node-a", "node-b"):
        # A local store is one folder: both nodes open it. On S3 each node has its own data
        # folder (its chunk cache) and the bucket is shared.
        data = tmp_path / ("shared" if not store_fields_of else name)
        settings = Settings(data_dir=data, database_url=url, **store_fields_of)
        archive = await Archive.open(settings, store=open_store(settings))
        made.append(Node(archive, LeaderLease(archive.engine, LEASE, name, LEASE_SECONDS, clock)))
    yield made
    for node in made:
        await node.archive.close()


async def orphans_of(archive: Archive) -> list[str]:
    """Objects no row names, made old enough for the janitor (a crash left them long ago)."""
    made = [await archive.store.put_bytes(f"orphan {n}".encode()) for n in range(ORPHANS)]
    for sha in made:
        age(archive, sha)
    return made


def age(archive: Archive, sha: str) -> None:
    store = archive.store
    if isinstance(store, LocalBlobStore):
        then = time.time() - 2 * GRACE
        os.utime(store.path(sha), (then, then))
    # S3 sets an object's time itself: janitors on S3 run with no grace period (``janitor``).


async def stored(archive: Archive, shas: list[str]) -> list[str]:
    return [sha for sha in shas if await archive.store.exists(sha)]


async def test_a_janitor_paused_between_listing_and_deleting_deletes_nothing_after_a_takeover(
    nodes: list[Node],
) -> None:
    a, b = nodes
    named = (await a.archive.ingest_bytes(CT, source=Source("import"))).sha256
    orphans = await orphans_of(a.archive)
    assert await a.lease.acquire()
    assert not await b.lease.acquire()

    paused = PausedGuard(a.lease)
    stale = asyncio.create_task(janitor(a, paused).round())
    await paused.paused.wait()  # a listed the orphans and is about to delete them
    a.lease.clock.now += LEASE_SECONDS + 1  # ... and stays paused past its hold
    assert await b.lease.acquire()
    paused.resume.set()
    with pytest.raises(LeaseLost, match="node-b"):
        await stale
    assert await stored(a.archive, orphans) == orphans  # the stale batch deleted nothing

    await janitor(b).round()
    assert await stored(b.archive, orphans) == []
    assert await stored(b.archive, [named]) == [named]


async def test_a_holder_whose_hold_runs_out_mid_batch_stops_before_the_next_delete(
    nodes: list[Node],
) -> None:
    a, _ = nodes
    s3 = s3_of(a.archive.store)
    if s3 is None:
        pytest.skip("the index check of each candidate is injected into the bucket janitor")
    orphans = await orphans_of(a.archive)
    assert await a.lease.acquire()
    checked: list[str] = []

    async def all_names() -> set[str]:
        return set()

    async def is_named(sha: str) -> bool:
        checked.append(sha)
        a.lease.clock.now += LEASE_SECONDS + 1  # the node stalls during its first delete
        return False

    with pytest.raises(LeaseLost, match="ran out"):
        await S3Janitor(s3, grace=0).remove_unnamed(all_names, is_named, a.lease)
    assert len(checked) == 1
    assert len(await stored(a.archive, orphans)) == ORPHANS - 1


async def test_verify_repair_leaves_orphans_to_the_node_holding_the_duty(
    nodes: list[Node],
) -> None:
    a, b = nodes
    orphans = await orphans_of(a.archive)
    settings = repair_settings(b.archive.settings)
    assert await a.lease.acquire()
    report = await verify_holding_the_janitor(settings, b.archive, deep=False)
    assert sorted(report.orphans) == sorted(orphans) and not report.repaired
    assert await stored(b.archive, orphans) == orphans

    await a.lease.release()
    report = await verify_holding_the_janitor(settings, b.archive, deep=False)
    assert report.repaired and report.kept == []
    assert await stored(b.archive, orphans) == []
    assert await b.lease.acquire()  # the repair gave the lease back


def repair_settings(settings: Settings) -> Settings:
    grace = 0.0 if settings.storage.backend == "s3" else GRACE
    return replace(settings, cluster=ClusterSettings(orphan_grace_seconds=grace))


def janitor(node: Node, guard=None) -> JanitorDuty:
    """The node's janitor; on S3, whose objects a test cannot age, with no grace period."""
    grace = 0.0 if s3_of(node.archive.store) is not None else GRACE
    return JanitorDuty(node.archive, guard or node.lease, grace, every=3600.0)
