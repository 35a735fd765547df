"""Background jobs: slide conversion in a worker process, ingested through the archive as it goes.

Job state lives in the ``jobs`` table, so finished and failed jobs survive a restart; jobs that
were running when the server stopped are marked failed on the next start. Live progress is kept
in memory and pushed to listeners (server-sent events) as it changes.

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
from hub.jobs import worker
from hub.jobs.tables import jobs
from hub.jobs.uploads import Upload, UploadError, UploadStore

ACTIVE = ("queued", "running", "ingesting")
FINISHED = ("done", "failed")
PERSIST_INTERVAL = 1.0  # seconds between progress writes of one job to the index


class JobNotFound(Exception):
    pass


class JobRunner:
    def __init__(
        self, archive: Archive, uploads: UploadStore, work_dir: Path, workers: int = 1
    ) -> None:
        self.archive = archive
        self.uploads = uploads
        self.work_dir = work_dir
        self.workers = workers
        self._live: dict[str, dict] = {}
        self._persisted_at: dict[str, float] = {}
        self._tasks: set[asyncio.Task] = set()
        self._changed = asyncio.Condition()
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
        await self._fail_interrupted()

    async def stop(self) -> None:
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

    async def _fail_interrupted(self) -> None:
        async with self.archive.engine.begin() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.status.in_(ACTIVE))
                .values(
                    status="failed",
                    error="interrupted: the server stopped while the job was running",
                    finished_at=time.time(),
                )
            )

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
        }
        self._live[job["id"]] = job  # before any await: a second submit now sees it
        try:
            async with self.archive.engine.begin() as conn:
                await conn.execute(jobs.insert().values(**job))
        except BaseException:
            self._live.pop(job["id"], None)
            raise
        task = asyncio.create_task(self._run(job, upload), name=f"job-{job['id']}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return public(job)

    async def _run(self, job: dict, upload: Upload) -> None:
        out_dir = self.work_dir / job["id"]
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
            if job["status"] not in FINISHED:
                failed = self._set(job, status="failed", error="cancelled: the server stopped")
                await asyncio.shield(failed)
            raise
        except Exception as exc:  # a bug must still end the job with a reason
            await self._set(job, status="failed", error=f"internal error: {exc!r}")
        finally:
            await asyncio.to_thread(shutil.rmtree, out_dir, True)
            self._live.pop(job["id"], None)
            self._persisted_at.pop(job["id"], None)

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
        task = asyncio.ensure_future(self._publish(job, persist=persist))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _set(self, job: dict, **values: object) -> None:
        if values.get("status") in FINISHED:
            values["finished_at"] = time.time()
        job.update(values)
        await self._publish(job, persist=True)

    async def _publish(self, job: dict, persist: bool) -> None:
        if persist:
            self._persisted_at[job["id"]] = time.monotonic()
            async with self.archive.engine.begin() as conn:
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job["id"])
                    .values({k: v for k, v in job.items() if k != "id"})
                )
        async with self._changed:
            self._changed.notify_all()

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

    async def wait_change(self, seconds: float) -> None:
        """Return when any job changed, or after ``seconds``."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), seconds)


class JobFailed(Exception):
    """A job ends with this reason shown to the user."""


@dataclass
class _Stored:
    """What a job has ingested so far."""

    paths: list[Path] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    expected: int | None = None  # instances the conversion made, once its result is in

    def incomplete(self) -> str:
        """The end of a failed job's error when part of the study is in the archive."""
        if not self.paths:
            return ""
        of = f" of {self.expected}" if self.expected else ""
        return f"; the study is incomplete: {len(self.paths)}{of} instances were stored"


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
    out["series_uids"] = json.loads(job["series_uids"] or "[]")
    out["warnings"] = json.loads(job.get("warnings") or "[]")
    out["finished"] = job["status"] in FINISHED
    return out


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    for process in list((pool._processes or {}).values()):  # no public API to stop a busy worker
        process.terminate()
        process.join(5)
