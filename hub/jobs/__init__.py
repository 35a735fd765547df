"""Resumable slide uploads and background conversion jobs.

``setup(app)`` adds the upload and job routes and starts the job runner with the application.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.jobs.keys import JOBS_KEY, UPLOADS_KEY
from hub.jobs.routes import add_routes, upload_errors
from hub.jobs.runner import JobRunner
from hub.jobs.uploads import Quota, UploadStore
from hub.serve import nodes
from hub.tasks import cancel_and_wait

log = logging.getLogger(__name__)

__all__ = ["JOBS_KEY", "UPLOADS_KEY", "setup"]


def setup(app: web.Application) -> None:
    add_routes(app)
    app.middlewares.append(upload_errors)
    app.cleanup_ctx.append(_run_jobs)


async def _run_jobs(app: web.Application) -> AsyncIterator[None]:
    archive = app[ARCHIVE_KEY]
    settings = app[SETTINGS_KEY]
    quota = Quota(
        settings.uploads_open_per_user or None, settings.uploads_declared_bytes_per_user or None
    )
    uploads = UploadStore(
        archive.engine, settings.data_dir / "uploads", settings.max_upload_bytes, quota
    )
    runner = JobRunner(
        archive,
        uploads,
        settings.data_dir / "jobs",
        workers=settings.jobs.convert_workers,
        node=await asyncio.to_thread(nodes.node_id, settings),
        cluster=settings.cluster,
    )
    app[UPLOADS_KEY] = uploads
    app[JOBS_KEY] = runner
    await runner.start()
    expiry = asyncio.create_task(
        _expire_uploads(uploads, settings.uploads_idle_seconds), name="upload-expiry"
    )
    try:
        yield
    finally:
        await cancel_and_wait(expiry)
        await runner.stop()


async def _expire_uploads(uploads: UploadStore, idle_seconds: float) -> None:
    """Housekeeping: abandoned uploads and their temp files go after ``idle_seconds``."""
    while True:
        try:
            if count := await uploads.expire_idle(idle_seconds):
                log.info("removed %d abandoned upload(s)", count)
        except Exception:  # noqa: BLE001 - housekeeping must not end the hub
            log.exception("upload expiry failed")
        await asyncio.sleep(min(3600.0, max(1.0, idle_seconds / 4)))
