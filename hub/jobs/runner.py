"""Background jobs: slide conversion in a worker process, ingested through the archive as it goes.

Job state lives in the ``jobs`` table, so finished and failed jobs survive a restart. A job runs
on the node that received its upload and holds a lease on its row (``hub.jobs.leases``): a
restarted node fails the jobs it was running, and any node fails the jobs of a node that stopped
renewing its leases. Live progress is kept in memory and pushed to listeners (server-sent events)
as it changes; it is written to the row about every second, where the other nodes read it, woken
by a hint (``hub.jobs.changes``).

A conversion hands over each instance as soon as it is written, smallest first (thumbnail, label,
overview, the pyramid from its smallest level up to level 0), and each is ingested at once: the
study can be opened while level 0 is still being made. A conversion that fails part-way leaves
the instances ingested so far in the archive: the job fails with the reason and says the study
is incomplete (the job keeps its study UID and instance count, and the viewer shows the error).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import secrets
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import desc, select, update

from hub.archive import Archive, Source
from hub.config import ClusterSettings
from hub.jobs import leases, worker
from hub.jobs.changes import POLL_SECONDS, JobChanges, announce
from hub.jobs.leases import ACTIVE
from hub.jobs.tables import jobs
from hub.jobs.uploads import Upload, UploadError, UploadStore
from hub.tasks import cancel_and_wait

log = logging.getLogger(__name__)

FINISHED = ("done", "failed")
PERSIST_INTERVAL = 1.0  # seconds between progress writes of one job to the index


class JobNotFound(Exception):
    pass


class JobLost(Exception):
    """This node's lease on a job it runs is gone: another node failed the job meanwhile."""


class JobRunner:
    def __init__(
        self,
        archive: Archive,
        uploads: UploadStore,
        work_dir: Path,
        workers: int = 1,
        *,
        node: str = "local",
        cluster: ClusterSettings = ClusterSettings(),
    ) -> None:
        self.archive = archive
        self.uploads = uploads
        self.work_dir = work_dir
        self.workers = workers
        self.node = node
        self.cluster = cluster
        self._live: dict[str, dict] = {}
        self._persisted_at: dict[str, float] = {}
        self._tasks: set[asyncio.Task] = set()
        self._runs: dict[str, asyncio.Task] = {}  # by job id
        self._held: set[str] = set()  # jobs whose row names this node as the lease owner
        self._lost: set[str] = set()  # jobs another node failed while this one ran them
        self._changes = JobChanges(archive.engine)
        self._keeper: asyncio.Task | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._queue = None
        self._reader: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrivals: dict[str, asyncio.Queue[Path | None]] = {}  # by job id, while converting
        # Awaited before each instance of a job is ingested: lets the host pace ingest (tests
        # hold a conversion between two levels with it).
        self.before_ingest: Callable[[dict, Path], Awaitable[None]] | None = None

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe in a threaded asyncio process
        self._queue = ctx.Queue()
        self._reader = threading.Thread(
            target=self._read_progress, name="job-progress", daemon=True
        )
        self._reader.start()
        self._ctx = ctx
        if failed := await leases.fail_own(self.archive.engine, self.node):
            log.warning("failed %d job(s) this node was running when it stopped", len(failed))
        await self._reap()
        self._changes.start()
        self._keeper = asyncio.create_task(self._keep_leases(), name="job-leases")

    async def stop(self) -> None:
        await cancel_and_wait(self._keeper)
        await self._changes.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(_terminate_workers, self._pool)
            self._pool = None
        if self._queue is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._reader.join, 5)
            self._queue.close()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=self._ctx,
                initializer=worker.init_worker,
                initargs=(self._queue,),
            )
        return self._pool

    # -- leases ----------------------------------------------------------
    async def _keep_leases(self) -> None:
        """Every heartbeat: renew this node's leases, then fail the jobs of nodes that stopped."""
        while True:
            await asyncio.sleep(self.cluster.heartbeat_seconds)
            try:
                await self._renew()
                await self._reap()
            except Exception:  # noqa: BLE001 - the index may be away for a moment; try again
                log.exception("renewing job leases failed")

    async def _renew(self) -> None:
        held = set(self._held)
        until = time.time() + self.cluster.lease_seconds
        kept = await leases.renew(self.archive.engine, self.node, held, until)
        for job_id in held - kept:
            job = self._live.get(job_id)
            # A job that just finished is no longer active either: only a running one is lost.
            if job_id in self._held and job is not None and job["status"] not in FINISHED:
                self._lose(job_id)

    async def _reap(self) -> None:
        failed = await leases.reap(self.archive.engine, self.cluster.lease_seconds)
        for job_id in failed:
            log.warning("job %s failed: the node running it stopped renewing its lease", job_id)
            self._changes.changed(job_id)

    def _lose(self, job_id: str) -> None:
        log.warning("job %s was failed by another node while this one ran it", job_id)
        self._lost.add(job_id)
        if (task := self._runs.get(job_id)) is not None:
            task.cancel()

    # -- submitting ------------------------------------------------------
    async def submit(self, upload: Upload) -> dict:
        """Start the job that turns a completed upload into archive objects."""
        if any(j["upload_id"] == upload.id for j in self._live.values()):
            raise UploadError(409, f"a job for upload {upload.id} is already running")
        kind = "convert" if upload.kind == "slide" else "ingest"
        job = {
            "id": secrets.token_hex(12),
            "kind": kind,
            "upload_id": upload.id,
            "filename": upload.filename,
            "status": "queued",
            "percent": 0.0,
            "frames_done": 0,
            "frames_total": 0,
            "eta_seconds": None,
            "error": None,
            "study_uid": None,
            "series_uids": "[]",
            "warnings": "[]",
            "instances": 0,
            "actor": upload.actor,
            "created_at": time.time(),
            "started_at": None,
            "finished_at": None,
            "lease_owner": self.node,
        }
        self._live[job["id"]] = job  # before any await: a second submit now sees it
        until = job["created_at"] + self.cluster.lease_seconds
        try:
            async with self.archive.engine.begin() as conn:
                await conn.execute(jobs.insert().values(**job, lease_expires_at=until))
                await announce(conn, [job["id"]])
        except BaseException:
            self._live.pop(job["id"], None)
            raise
        self._held.add(job["id"])
        task = asyncio.create_task(self._run(job, upload), name=f"job-{job['id']}")
        self._runs[job["id"]] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return public(job)

    async def _run(self, job: dict, upload: Upload) -> None:
        out_dir = self.work_dir / job["id"]
        try:
            await self._work(job, upload, out_dir)
        except JobLost:  # the row says why; this node leaves it alone
            log.warning("job %s was failed by another node while this one ran it", job["id"])
        finally:
            # Let go of the job before the first await: a cancel arriving now skips nothing.
            for table in (self._live, self._persisted_at, self._runs):
                table.pop(job["id"], None)
            self._held.discard(job["id"])
            self._lost.discard(job["id"])
            self._changes.changed(job["id"])  # its followers here now read the row
            await asyncio.to_thread(shutil.rmtree, out_dir, True)

    async def _work(self, job: dict, upload: Upload, out_dir: Path) -> None:
        stored = _Stored()
        try:
            if job["kind"] == "convert":
                paths, progress = await self._convert(job, upload, out_dir, stored)
            else:
                paths, progress = [upload.path], {}
            await self._ingest(job, paths, upload, progress, stored)
            await self.uploads.consumed(upload.id)
            await asyncio.to_thread(shutil.rmtree, upload.path.parent, True)
            await self._set(job, status="done", percent=100.0, eta_seconds=0.0)
        except JobFailed as exc:
            await self._set(job, status="failed", error=str(exc))
        except asyncio.CancelledError:
            if job["status"] not in FINISHED and job["id"] not in self._lost:
                error = f"cancelled: node {self.node} stopped"
                with contextlib.suppress(JobLost):
                    await asyncio.shield(self._set(job, status="failed", error=error))
            raise
        except JobLost:
            raise
        except Exception as exc:  # a bug must still end the job with a reason
            await self._set(job, status="failed", error=f"internal error: {exc!r}")

    async def _convert(
        self, job: dict, upload: Upload, out_dir: Path, stored: _Stored
    ) -> tuple[list[Path], dict[str, object]]:
        """Convert, ingesting each instance the worker hands over meanwhile; returns all the
        outputs and the job's final progress figures, taken from the result."""
        # Stays "queued" until a worker process picks it up (its first progress message).
        await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        arrivals: asyncio.Queue[Path | None] = asyncio.Queue()
        self._arrivals[job["id"]] = arrivals
        ingesting = asyncio.create_task(self._ingest_arrivals(job, upload, arrivals, stored))
        try:
            result = await loop.run_in_executor(
                self._executor(),
                worker.convert,
                job["id"],
                str(upload.path),
                str(out_dir),
                upload.fields,
            )
        except BrokenProcessPool:
            self._pool = None  # a fresh pool is made for the next job
            result = {"error": "the conversion worker process died (out of memory?)"}
        except BaseException:
            ingesting.cancel()
            raise
        finally:
            # Instances announced after this are in the result's list and ingested from there.
            self._arrivals.pop(job["id"], None)
            arrivals.put_nowait(None)
        await ingesting  # its JobFailed (the archive refused an instance) is the job's error
        if "error" in result:
            # What was handed over before the failure is kept, also what the queue had not
            # delivered yet when the result came.
            for path in map(Path, result.get("handed_over", [])):
                if path not in stored.paths:
                    await self._ingest_one(job, path, upload, stored)
            raise JobFailed(f"conversion failed: {result['error']}" + stored.incomplete())
        if not result["paths"]:
            raise JobFailed("conversion produced no DICOM instances")
        progress = _progress(job, result["frames_done"], result["frames_total"])
        progress["warnings"] = json.dumps(result.get("warnings", []))
        return [Path(p) for p in result["paths"]], progress

    def _on_instance(self, job_id: str, path: str) -> None:
        if (arrivals := self._arrivals.get(job_id)) is not None:
            arrivals.put_nowait(Path(path))

    async def _ingest_arrivals(
        self, job: dict, upload: Upload, arrivals: asyncio.Queue[Path | None], stored: _Stored
    ) -> None:
        while (path := await arrivals.get()) is not None:
            await self._ingest_one(job, path, upload, stored)

    async def _ingest(
        self,
        job: dict,
        paths: list[Path],
        upload: Upload,
        progress: dict[str, object],
        stored: _Stored,
    ) -> None:
        """Ingest the outputs not ingested yet; reached once the whole conversion has succeeded.

        The final progress figures are set together with the status: from then on _on_progress
        drops the worker's messages, which may still be arriving behind its result."""
        started = job["started_at"] or time.time()
        await self._set(job, status="ingesting", started_at=started, **progress)
        stored.expected = len(paths)
        for path in paths:
            if path not in stored.paths:
                await self._ingest_one(job, path, upload, stored)

    async def _ingest_one(self, job: dict, path: Path, upload: Upload, stored: _Stored) -> None:
        if self.before_ingest is not None:
            await self.before_ingest(public(job), path)
        source = Source(door="wsi" if job["kind"] == "convert" else "upload", actor=upload.actor)
        # Moved, not copied: outputs and uploads are this job's own files (multi-GB).
        result = await self.archive.ingest_file(path, source=source, keep_source=False)
        if not result.ok:
            raise JobFailed(
                f"{path.name} was refused by the archive: {result.message}" + stored.incomplete()
            )
        stored.paths.append(path)
        if result.series_uid not in stored.series:
            stored.series.append(result.series_uid)
        await self._set(
            job,
            instances=len(stored.paths),
            study_uid=job["study_uid"] or result.study_uid,
            series_uids=json.dumps(stored.series),
        )

    # -- progress --------------------------------------------------------
    def _read_progress(self) -> None:
        """Thread: carry worker progress messages onto the event loop."""
        while (message := self._queue.get()) is not None:
            if message[0] == worker.INSTANCE:
                self._loop.call_soon_threadsafe(self._on_instance, *message[1:])
            else:
                self._loop.call_soon_threadsafe(self._on_progress, *message)

    def _on_progress(self, job_id: str, done: int, total: int) -> None:
        job = self._live.get(job_id)
        if job is None or job["status"] not in ("queued", "running"):
            return
        if job["status"] == "queued":
            job["status"], job["started_at"] = "running", time.time()
            self._persisted_at[job_id] = 0.0  # write the state change at once
        job.update(_progress(job, done, total))
        persist = time.monotonic() - self._persisted_at.get(job_id, 0.0) >= PERSIST_INTERVAL
        task = asyncio.ensure_future(self._publish_progress(job, persist))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_progress(self, job: dict, persist: bool) -> None:
        try:
            await self._publish(job, persist)
        except JobLost:
            self._lose(job["id"])

    async def _set(self, job: dict, **values: object) -> None:
        if values.get("status") in FINISHED:
            values["finished_at"] = time.time()
        job.update(values)
        await self._publish(job, persist=True)

    async def _publish(self, job: dict, persist: bool) -> None:
        """Tell followers of the change; ``persist``: write the row first (raises JobLost when it
        is no longer this node's to write)."""
        if persist:
            self._persisted_at[job["id"]] = time.monotonic()
            async with self.archive.engine.begin() as conn:
                written = await conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == job["id"],
                        jobs.c.lease_owner == self.node,
                        jobs.c.status.in_(ACTIVE),
                    )
                    .values({k: v for k, v in job.items() if k != "id"})
                )
                if not written.rowcount:
                    raise JobLost(job["id"])
                await announce(conn, [job["id"]])
        self._changes.changed(job["id"])

    # -- reading ---------------------------------------------------------
    async def get(self, job_id: str) -> dict:
        if (job := self._live.get(job_id)) is not None:
            return public(job)
        async with self.archive.engine.connect() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).mappings().first()
        if row is None:
            raise JobNotFound(job_id)
        return public(dict(row))

    async def recent(self, limit: int = 50) -> list[dict]:
        async with self.archive.engine.connect() as conn:
            rows = (
                (await conn.execute(select(jobs).order_by(desc(jobs.c.created_at)).limit(limit)))
                .mappings()
                .all()
            )
        return [public(self._live.get(r["id"], dict(r))) for r in rows]

    async def wait_change(self, job_id: str, seconds: float) -> None:
        """Return when the job changed, or after ``seconds``; sooner for a job another node runs
        (its changes may come without a hint, so its row is read again)."""
        if job_id not in self._live:
            seconds = min(seconds, POLL_SECONDS)
        await self._changes.wait(job_id, seconds)


class JobFailed(Exception):
    """A job ends with this reason shown to the user."""


@dataclass
class _Stored:
    """What a job has ingested so far."""

    paths: list[Path] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    expected: int | None = None  # instances the conversion made, once its result is in

    def incomplete(self) -> str:
        return leases.incomplete(len(self.paths), self.expected)


def _progress(job: dict, done: int, total: int) -> dict[str, object]:
    """The job's progress fields for ``done`` of ``total`` frames."""
    elapsed = time.time() - (job["started_at"] or time.time())
    return {
        "frames_done": done,
        "frames_total": total,
        "percent": round(100.0 * done / total, 1) if total else 0.0,
        "eta_seconds": round(elapsed / done * (total - done), 1) if done else None,
    }


def public(job: dict) -> dict:
    out = dict(job)
    out["node"] = out.pop("lease_owner", None)
    out.pop("lease_expires_at", None)  # renewed every heartbeat: not a change of the job
    out["series_uids"] = json.loads(job["series_uids"] or "[]")
    out["warnings"] = json.loads(job.get("warnings") or "[]")
    out["finished"] = job["status"] in FINISHED
    return out


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    for process in list((pool._processes or {}).values()):  # no public API to stop a busy worker
        process.terminate()
        process.join(5)
