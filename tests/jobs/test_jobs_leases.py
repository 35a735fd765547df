"""Job leases between nodes sharing one index (SQLite here, PostgreSQL under with_postgres.sh):
a restart fails the node's own jobs only, and a job whose node stopped renewing its lease is
failed by another node's reaper with the reason, while a renewed one is left alone."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select, text, update

from hub.archive import Archive
from hub.config import ClusterSettings
from hub.jobs.changes import JobChanges, announce
from hub.jobs.leases import restarted_error, stopped_error
from hub.jobs.runner import JobRunner
from hub.jobs.tables import jobs
from hub.jobs.uploads import UploadStore

FAST = ClusterSettings(heartbeat_seconds=0.1, lease_seconds=1.0)
# For a node that must keep its lease: a loaded machine can stall its event loop for a second.
STEADY = ClusterSettings(heartbeat_seconds=0.25, lease_seconds=4.0)


@asynccontextmanager
async def runner_of(
    archive: Archive, root: Path, node: str, cluster: ClusterSettings = FAST
) -> AsyncIterator[JobRunner]:
    """A node's job runner on the shared index, with an upload folder and work folder of its own."""
    uploads = UploadStore(archive.engine, root / node / "uploads", 1024**3)
    runner = JobRunner(archive, uploads, root / node / "jobs", node=node, cluster=cluster)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def insert_job(archive: Archive, job_id: str, status: str, **values: object) -> None:
    now = time.time()
    async with archive.engine.begin() as conn:
        await conn.execute(
            jobs.insert().values(
                id=job_id, kind="convert", filename=f"{job_id}.svs", status=status,
                created_at=now, started_at=now, **values,
            )
        )  # fmt: skip


async def row(archive: Archive, job_id: str) -> dict:
    async with archive.engine.connect() as conn:
        return dict((await conn.execute(select(jobs).where(jobs.c.id == job_id))).mappings().one())


async def eventually(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_restart_fails_only_the_nodes_own_active_jobs(archive, tmp_path):
    later = time.time() + 3600
    await insert_job(archive, "mine", "running", lease_owner="a", lease_expires_at=later)
    await insert_job(archive, "theirs", "ingesting", lease_owner="b", lease_expires_at=later)
    await insert_job(archive, "finished", "done", lease_owner="a", lease_expires_at=later)

    async with runner_of(archive, tmp_path, "a"):
        mine = await row(archive, "mine")
        assert (mine["status"], mine["error"]) == ("failed", restarted_error("a"))
        assert mine["finished_at"] is not None
        theirs = await row(archive, "theirs")
        assert (theirs["status"], theirs["error"]) == ("ingesting", None)
        assert (await row(archive, "finished"))["status"] == "done"


async def test_the_reaper_fails_jobs_whose_lease_ran_out_and_keeps_live_ones(archive, tmp_path):
    now = time.time()
    await insert_job(
        archive, "expired", "running", lease_owner="a", lease_expires_at=now - 1, instances=3
    )
    await insert_job(archive, "live", "ingesting", lease_owner="c", lease_expires_at=now + 3600)
    await insert_job(archive, "unleased", "queued")  # written before jobs had leases

    async with runner_of(archive, tmp_path, "b") as runner:
        expired = await row(archive, "expired")
        assert expired["status"] == "failed"
        assert expired["error"] == (
            "interrupted: node a stopped while the job was running (no heartbeat for 1 s); its "
            "upload is kept on that node, so no other node can resume it"
            "; the study is incomplete: 3 instances were stored"
        )
        assert (await row(archive, "unleased"))["error"] == stopped_error(None, 1.0)
        # Several heartbeats of node b later, c's job (its lease still runs) is untouched ...
        for _ in range(3):
            await asyncio.sleep(FAST.heartbeat_seconds)
        assert (await row(archive, "live"))["status"] == "ingesting"
        # ... and once c's lease runs out, b's periodic reaper fails it.
        async with archive.engine.begin() as conn:
            await conn.execute(
                update(jobs).where(jobs.c.id == "live").values(lease_expires_at=time.time() - 1)
            )

        async def failed() -> bool:
            return (await runner.get("live"))["status"] == "failed"

        await eventually(failed, "node b did not reap c's job")
        assert (await runner.get("live"))["error"] == stopped_error("c", 1.0)


async def submit_dicom(runner: JobRunner) -> dict:
    """A complete upload of a small DICOM file on the runner's node, and its job started."""
    path = Path(get_testdata_file("CT_small.dcm"))
    upload = await runner.uploads.create(path.name, path.stat().st_size, {}, None)
    await asyncio.to_thread(shutil.copyfile, path, upload.path)  # what its chunks would write
    return await runner.submit(await runner.uploads.mark_complete(upload.id))


@pytest.mark.parametrize("renewing", [True, False], ids=["renewed", "heartbeat-stopped"])
async def test_a_running_job_is_kept_while_its_node_renews_and_reaped_once_it_stops(
    archive, tmp_path, renewing
):
    held = asyncio.Event()
    release = asyncio.Event()

    async def gate(job: dict, path: Path) -> None:
        held.set()
        await release.wait()

    a_of, b_of = (
        runner_of(archive, tmp_path, "a", STEADY),
        runner_of(archive, tmp_path, "b", STEADY),
    )
    async with a_of as a, b_of as b:
        a.before_ingest = gate
        job = await submit_dicom(a)
        await asyncio.wait_for(held.wait(), 30)
        if not renewing:
            # A node that hangs or loses the index stops renewing; that fault is made here by
            # stopping node a's heartbeat task, the rest of node a going on as before.
            a._keeper.cancel()
        # Past two of its lease periods, a's job is active while a renews it ...
        await asyncio.sleep(2 * STEADY.lease_seconds)
        seen = await b.get(job["id"])
        if renewing:
            assert seen["status"] == "ingesting" and seen["node"] == "a", seen
            release.set()

            async def done() -> bool:
                return (await b.get(job["id"]))["status"] == "done"

            await eventually(done, "node a's job did not finish")
            return
        # ... and failed by b's reaper once a stopped renewing it.
        assert seen["status"] == "failed", seen
        assert seen["error"].startswith("interrupted: node a stopped while the job was running")
        # Node a, going on, finds its job taken: it writes nothing over b's verdict.
        release.set()
        await eventually(lambda: _idle(a), "node a did not let go of its job")
        final = await row(archive, job["id"])
        assert (final["status"], final["error"]) == ("failed", seen["error"])
        upload = await a.uploads.get(job["upload_id"])
        assert upload.status == "complete"  # not consumed: the job did not finish


async def _idle(runner: JobRunner) -> bool:
    return not runner._live


async def test_a_change_written_on_one_node_wakes_the_followers_on_another(settings, tmp_path):
    if not settings.database_url:
        pytest.skip("change hints are PostgreSQL's LISTEN/NOTIFY; on SQLite followers poll")
    writer, reader = await Archive.open(settings), await Archive.open(settings)
    changes = JobChanges(reader.engine)
    try:
        changes.start()
        await asyncio.wait_for(changes.listening.wait(), 30)
        waiting = asyncio.create_task(changes.wait("job-1", 60))
        await asyncio.sleep(0)  # the follower is waiting before the change is written
        async with writer.engine.begin() as conn:
            await announce(conn, ["job-1"])
        assert await waiting, "the hint did not wake the follower (it waited out its time)"
    finally:
        await changes.stop()
        await writer.close()
        await reader.close()


async def test_the_hints_come_again_after_the_listening_connection_is_cut(settings):
    if not settings.database_url:
        pytest.skip("change hints are PostgreSQL's LISTEN/NOTIFY; on SQLite followers poll")
    writer, reader = await Archive.open(settings), await Archive.open(settings)
    changes = JobChanges(reader.engine)
    try:
        changes.start()
        await asyncio.wait_for(changes.listening.wait(), 30)
        async with writer.engine.begin() as conn:  # as an administrator or a failover would
            cut = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN %'"
                )
            )
            assert cut.scalars().all() == [True]
        await eventually(_is(lambda: not changes.listening.is_set()), "the cut went unnoticed")
        await asyncio.wait_for(changes.listening.wait(), 30)
        waiting = asyncio.create_task(changes.wait("job-2", 60))
        await asyncio.sleep(0)
        async with writer.engine.begin() as conn:
            await announce(conn, ["job-2"])
        assert await waiting, "no hint after the connection was made again"
    finally:
        await changes.stop()
        await writer.close()
        await reader.close()


def _is(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def checked() -> bool:
        return check()

    return checked
