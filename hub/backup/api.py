"""``GET /api/backup/status`` (``admin.backup.status``): the scheduled backups, for an
administrator or a monitor that alerts on ``stale`` (``hub.backup.status``)."""

from __future__ import annotations

from aiohttp import web

from hub.apispec import described
from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.backup.status import backup_status


def setup(app: web.Application) -> None:
    app.router.add_get("/api/backup/status", show_status, name="admin.backup.status")


@described("Scheduled backups: the target, the last run, backup and verify, and a stale flag")
async def show_status(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY].backup
    status = await backup_status(settings, request.app[ARCHIVE_KEY].engine)
    return web.json_response(status, headers={"Cache-Control": "no-store"})
