"""Resumable slide uploads and background conversion jobs.

``setup(app)`` adds the upload and job routes and starts the job runner with the application.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.jobs.keys import JOBS_KEY, UPLOADS_KEY
from hub.jobs.routes import add_routes, upload_errors
from hub.jobs.runner import JobRunner
from hub.jobs.uploads import UploadStore

__all__ = ["JOBS_KEY", "UPLOADS_KEY", "setup"]


def setup(app: web.Application) -> None:
    add_routes(app)
    app.middlewares.append(upload_errors)
    app.cleanup_ctx.append(_run_jobs)


async def _run_jobs(app: web.Application) -> AsyncIterator[None]:
    archive = app[ARCHIVE_KEY]
    settings = app[SETTINGS_KEY]
    uploads = UploadStore(archive.engine, settings.data_dir / "uploads", settings.max_upload_bytes)
    runner = JobRunner(
        archive,
        uploads,
        settings.data_dir / "jobs",
        workers=int(settings.extra.get("convert_workers", 1)),
    )
    app[UPLOADS_KEY] = uploads
    app[JOBS_KEY] = runner
    await runner.start()
    try:
        yield
    finally:
        await runner.stop()
