"""``GET /api/admin/system`` (``admin.system``): versions, storage, the index, the queues, the
nodes, open DICOM associations, backups and recent errors (``hub.system.report``)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from hub.apispec import described
from hub.app_keys import ARCHIVE_KEY, NODE_KEY, SETTINGS_KEY
from hub.dimse.service import DIMSE_KEY
from hub.system.report import Dimse, SystemReport, system_report


def setup(app: web.Application) -> None:
    app.router.add_get("/api/admin/system", show_system, name="admin.system")


@described(
    "The hub's state: versions, storage, the index, queue depths, nodes, open DICOM "
    "associations, backups and the last errors logged",
    returns=SystemReport,
)
async def show_system(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS_KEY]
    report = await system_report(settings, app[ARCHIVE_KEY].engine, app[NODE_KEY].node, _dimse(app))
    return web.json_response(msgspec.to_builtins(report), headers={"Cache-Control": "no-store"})


def _dimse(app: web.Application) -> Dimse:
    settings = app[SETTINGS_KEY]
    server = app[DIMSE_KEY].server if DIMSE_KEY in app else None
    if server is None:
        return Dimse(False, settings.ae_title, None, None, None, None)
    established, connecting = server.associations()
    config = server.config
    return Dimse(
        True, config.ae_title, server.port, config.max_associations, established, connecting
    )
