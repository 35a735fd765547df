"""Application keys of the jobs package."""

from __future__ import annotations

from aiohttp import web

from hub.jobs.runner import JobRunner
from hub.jobs.uploads import UploadStore

UPLOADS_KEY: web.AppKey[UploadStore] = web.AppKey("uploads", UploadStore)
JOBS_KEY: web.AppKey[JobRunner] = web.AppKey("jobs", JobRunner)
