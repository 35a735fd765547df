"""Two real nodes, ``tessera serve`` each, on one index and one bucket. The node holding the
janitor lease is killed (SIGKILL) in the middle of its sweep: the other takes the lease over once
the hold runs out and finishes the sweep. The holder is paused (SIGSTOP) after it listed the
bucket: once the other holds the lease, the resumed node removes nothing. The kill on SQLite (one
index file both nodes open) and on PostgreSQL when the run has one; the pause on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from blob_kinds import s3_settings
from hubtest import HubProcess, free_port
from leasetest import index_url
from relay import Relay
from s3_server import SeaweedS3
from sqlalchemy import select

from hub.archive.blobs.s3 import S3BlobStore
from hub.archive.index import make_engine
from hub.serve.janitor_duty import LEASE
from hub.serve.tables import leases

POSTGRES = os.environ.get("TESSERA_TEST_POSTGRES")
ORPHANS = 5
# Short holds, so that a takeover comes within seconds; no grace period, since S3 sets an
# object's time itself and these orphans are new.
CLUSTER = {"heartbeat_seconds": 0.5, "lease_seconds": 3.0, "orphan_grace_seconds": 0.0}


def node_env(
    server: SeaweedS3, prefix: str, index: str, node: str, endpoint: str, **cluster: float
) -> dict:
    return {
        **server.env(),
        "TESSERA_S3_ENDPOINT": endpoint,
        "TESSERA_S3_PREFIX": prefix,
        "TESSERA_DATABASE_URL": index,
        "TESSERA_NODE_ID": node,
        "TESSERA_EXTRA": json.dumps({"cluster": {**CLUSTER, **cluster}}),
    }


async def crashed_bucket(seaweedfs: SeaweedS3, new_database, tmp_path: Path):
    """A fresh index, and a bucket holding five objects no row names (a crash left them): the
    index URL, the S3 settings, a store on the bucket and the orphans' names, sorted."""
    index = await index_url(new_database, tmp_path)
    settings = s3_settings(seaweedfs)
    store = S3BlobStore(settings, tmp_path / "spool")
    orphans = sorted([await store.put_bytes(f"left by a crash {n}".encode()) for n in range(5)])
    return index, settings, store, orphans


async def lease_row(index: str):
    engine = make_engine(index)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(select(leases).where(leases.c.name == LEASE))).one()
    finally:
        await engine.dispose()


async def stored(store: S3BlobStore, shas: list[str]) -> list[str]:
    return [sha for sha in shas if await store.exists(sha)]


async def until_logged(node: HubProcess, text: str, timeout: float = 120.0) -> None:
    """Read the node's output until a line with ``text`` (a killed node ends the read)."""

    def read() -> bool:
        assert node.proc.stdout is not None
        return any(text in line for line in node.proc.stdout)

    try:
        assert await asyncio.wait_for(asyncio.to_thread(read), timeout), f"never logged: {text}"
    except TimeoutError:
        raise AssertionError(f"timed out waiting for the log line {text!r}") from None


async def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.mark.timeout(300)
async def test_a_leader_killed_mid_sweep_is_replaced_and_the_sweep_finished(
    seaweedfs: SeaweedS3, new_database, tmp_path: Path
) -> None:
    index, settings, store, orphans = await crashed_bucket(seaweedfs, new_database, tmp_path)
    upstream = int(seaweedfs.endpoint.rsplit(":", 1)[1])
    # node-a reaches the bucket through a relay that holds its first delete (obstore sends a
    # one-key DeleteObjects) back for good.
    async with Relay(upstream, b"?delete", mode="stall", method=b"POST") as relay:
        env_a = node_env(seaweedfs, settings.prefix, index, "node-a", relay.endpoint)
        a = await asyncio.to_thread(HubProcess, tmp_path / "node-a", free_port(), env=env_a)
        try:

            async def a_is_deleting() -> bool:
                return relay.tampered > 0

            await wait_for(a_is_deleting, "node-a's sweep to send its first delete")
            leader = await lease_row(index)
            assert leader.holder == "node-a"

            env_b = node_env(seaweedfs, settings.prefix, index, "node-b", seaweedfs.endpoint)
            b = await asyncio.to_thread(HubProcess, tmp_path / "node-b", free_port(), env=env_b)
            try:
                # node-a is alive and renewing, mid-sweep: node-b serves, but sweeps nothing.
                assert (await lease_row(index)).holder == "node-a"
                assert await stored(store, orphans) == orphans

                a.proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(a.proc.wait)

                async def swept() -> bool:
                    return await stored(store, orphans) == []

                await wait_for(swept, "node-b to take the lease over and sweep")
                now = await lease_row(index)
                assert now.holder == "node-b" and now.fence > leader.fence
                assert b.proc.poll() is None
            finally:
                b.stop()
        finally:
            a.stop()
            await store.close()


# A process stopped while it holds SQLite's write lock (a heartbeat, a lease renewal) stops every
# other writer of the file until it resumes: several serving nodes need PostgreSQL (README).
@pytest.mark.skipif(not POSTGRES, reason="pausing a node is only survivable on PostgreSQL")
@pytest.mark.timeout(300)
async def test_a_leader_paused_after_listing_removes_nothing_once_another_node_holds_the_lease(
    seaweedfs: SeaweedS3, new_database, tmp_path: Path
) -> None:
    index, settings, store, orphans = await crashed_bucket(seaweedfs, new_database, tmp_path)
    upstream = int(seaweedfs.endpoint.rsplit(":", 1)[1])
    # node-a's listing of the bucket is held back until node-a is paused.
    async with Relay(upstream, b"list-type=2", mode="hold", method=b"GET") as relay:
        env_a = node_env(seaweedfs, settings.prefix, index, "node-a", relay.endpoint)
        a = await asyncio.to_thread(HubProcess, tmp_path / "node-a", free_port(), env=env_a)
        try:

            async def a_is_listing() -> bool:
                return relay.tampered > 0

            await wait_for(a_is_listing, "node-a's sweep to list the bucket")
            leader = await lease_row(index)
            assert leader.holder == "node-a"
            a.proc.send_signal(signal.SIGSTOP)
            relay.released.set()  # the listing's answer waits for node-a in its socket

            # node-b keeps objects as young as these: only a stale node-a would remove them.
            env_b = node_env(
                seaweedfs,
                settings.prefix,
                index,
                "node-b",
                seaweedfs.endpoint,
                orphan_grace_seconds=3600.0,
            )
            b = await asyncio.to_thread(HubProcess, tmp_path / "node-b", free_port(), env=env_b)
            try:

                async def b_holds() -> bool:
                    return (await lease_row(index)).holder == "node-b"

                await wait_for(b_holds, "node-b to take the lease over")
                a.proc.send_signal(signal.SIGCONT)
                await until_logged(a, "the janitor lease was lost")
                assert await stored(store, orphans) == orphans
                now = await lease_row(index)
                assert now.holder == "node-b" and now.fence > leader.fence
            finally:
                b.stop()
        finally:
            a.proc.send_signal(signal.SIGCONT)
            a.stop()
            await store.close()
